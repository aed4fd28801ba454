// A live session's slides: the deck on screen and page flips. A panel of the
// session page (session.js): `section` is its card; `render(snap)` draws it from
// the snapshot; `apply(m, snap)` takes one `slides` event and answers the part of
// the snapshot it replaces.
//
// The snapshot has `slides` (where everyone is: deck_id, title, count, page,
// reached, mode) and `deck` (the content of the deck on screen). A page flip
// event carries `slides` only; showing another deck carries `deck` too.
//
// Trainers pick, create (Markdown) or upload (image, PDF) decks, turn pages and
// set the mode. Students follow the trainer's page; in `student` mode (pages the
// trainer has reached) and `free` mode (any page) they may browse on their own,
// and "Back to the trainer's page" makes them follow again. Where a student is
// is kept in this page only. session.js calls `render` on every event of the
// session, so the slide itself is redrawn only when what it shows changes.

const MODE_LABEL = {
  teacher: 'Trainer-paced: students follow',
  student: 'Student-paced: pages reached so far',
  free: 'Free browsing: every page',
};
const UPLOAD_TYPES = 'image/png,image/jpeg,image/gif,image/webp,application/pdf';
/// Pages fetched ahead of the one on screen.
const PREFETCH = 2;

function cookie(name) {
  for (const part of document.cookie.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return '';
}

/// The slide's HTML, sanitised by the server, parsed inert and checked once
/// more: nothing active survives, links open in a new tab.
function safeFragment(html) {
  const t = document.createElement('template');
  t.innerHTML = html;
  for (const el of t.content.querySelectorAll('script,style,iframe,object,embed,link,meta,base,form,frame,frameset,svg,math')) el.remove();
  for (const el of t.content.querySelectorAll('*')) {
    for (const a of [...el.attributes]) {
      const name = a.name.toLowerCase();
      const url = name === 'href' || name === 'src';
      if (name.startsWith('on') || name === 'style' || name === 'srcdoc'
        || (url && !/^(https?:|mailto:)/i.test(a.value.trim()))) el.removeAttribute(a.name);
    }
    if (el.tagName === 'A') { el.target = '_blank'; el.rel = 'noopener noreferrer'; }
    if (el.tagName === 'IMG') { el.referrerPolicy = 'no-referrer'; el.loading = 'lazy'; }
  }
  return t.content;
}

export function slidesPanel(ctx) {
  const { h, say, call, sid, staff, courseId } = ctx;
  const enc = encodeURIComponent;

  let own = null; // a student's own page while browsing; null: following the trainer
  let drawn = ''; // what the stage shows: deck id and page
  let deckId = null;
  let decks = null; // the course's decks (staff), loaded once, then after each change
  let missing = null; // a shown deck the list lacked when last loaded (deleted since?)
  const prefetched = new Set();

  const stage = h('div', {
    class: 'slide-stage', id: 'slide-stage', tabindex: '0', role: 'region',
    'aria-label': 'Current slide', 'aria-live': 'polite',
  });
  const indicator = h('p', { class: 'slide-indicator', id: 'slide-indicator' });
  const prev = h('button', { type: 'button', onclick: () => step(-1), text: 'Previous page' });
  const next = h('button', { type: 'button', onclick: () => step(1), text: 'Next page' });
  const full = h('button', {
    type: 'button', class: 'link', text: 'Full screen',
    onclick: () => { stage.requestFullscreen?.().catch(() => {}); stage.focus(); },
  });
  const nav = h('div', { class: 'slide-nav' }, prev, indicator, next);
  const notice = h('p', { class: 'slide-notice', id: 'slide-notice', role: 'status' });
  const back = h('button', {
    type: 'button', text: "Back to the trainer's page",
    onclick: () => { own = null; draw(ctx.snap()); stage.focus(); },
  });
  const follow = h('div', { class: 'slide-follow' }, notice, back);
  const deckTitle = h('span', { id: 'slide-deck' });
  const head = h('p', { class: 'slide-head muted' }, deckTitle, full);

  stage.addEventListener('keydown', (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    // Up and down stay for scrolling a long slide.
    if (e.key === 'ArrowRight' || e.key === 'PageDown') { e.preventDefault(); step(1); }
    if (e.key === 'ArrowLeft' || e.key === 'PageUp') { e.preventDefault(); step(-1); }
  });

  // Trainers: the deck picker, the Markdown form, the upload, the mode.
  const picker = h('select', { id: 'deck-choice', 'aria-label': 'Deck to show' });
  const modeSelect = h('select', { id: 'slides-mode' },
    Object.entries(MODE_LABEL).map(([value, text]) => h('option', { value, text })));
  modeSelect.addEventListener('change', async () => {
    try {
      await call('PATCH', `sessions/${enc(sid)}/slides`, { mode: modeSelect.value });
    } catch (err) { say(err.message, 'error'); modeSelect.value = (ctx.snap().slides || {}).mode || 'teacher'; }
  });
  const tools = staff ? buildTools() : null;

  const body = h('div', { class: 'slides' }, head, stage, nav, follow);
  const section = h('section', { 'aria-labelledby': 'slides-title', class: 'card slides-card' },
    h('h2', { id: 'slides-title', text: 'Slides' }), body, tools);

  function buildTools() {
    const run = (label, fn) => h('button', {
      type: 'button',
      onclick: async (e) => {
        e.target.disabled = true;
        try { await fn(); } catch (err) { say(err.message, 'error'); } finally { e.target.disabled = false; }
      },
    }, label);
    const show = async (id) => {
      await call('POST', `sessions/${enc(sid)}/slides`, { deck_id: id });
      if (id) stage.focus();
    };

    const titleInput = h('input', { id: 'deck-title', maxlength: 120, required: true });
    const markdown = h('textarea', {
      id: 'deck-markdown', rows: 8, required: true,
      placeholder: '# First slide\n\nText…\n\n## Second slide\n\n- a point',
    });
    const mdForm = h('form', { 'aria-label': 'Create a deck from Markdown', class: 'deck-form' },
      h('p', {}, h('label', { for: 'deck-title', text: 'Deck title' }), titleInput),
      h('p', {}, h('label', { for: 'deck-markdown', text: 'Markdown' }), markdown,
        h('span', { class: 'muted', text: 'A new slide starts at each # or ## heading, and at each line ---.' })),
      h('button', { type: 'submit', text: 'Create the deck' }));
    mdForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      try {
        const res = await call('POST', `courses/${enc(courseId)}/decks`, { title: titleInput.value, markdown: markdown.value });
        mdForm.reset();
        done();
        await loadDecks(res.deck.id);
        say(`Deck "${res.deck.title}" created: ${res.deck.count} slide${res.deck.count === 1 ? '' : 's'}.`);
      } catch (err) { say(err.message, 'error'); }
    });

    const fileInput = h('input', { id: 'deck-file', type: 'file', accept: UPLOAD_TYPES, required: true });
    const fileTitle = h('input', { id: 'deck-file-title', maxlength: 120, placeholder: 'The file name' });
    const upForm = h('form', { 'aria-label': 'Upload an image or PDF', class: 'deck-form' },
      h('p', {}, h('label', { for: 'deck-file', text: 'Image or PDF' }), fileInput),
      h('p', {}, h('label', { for: 'deck-file-title', text: 'Title of the upload' }), fileTitle),
      h('button', { type: 'submit', text: 'Upload' }));
    upForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      const file = fileInput.files[0];
      if (!file) return;
      const button = upForm.querySelector('button');
      button.disabled = true;
      say(file.type === 'application/pdf' ? 'Uploading and rendering the PDF…' : 'Uploading…');
      try {
        const title = fileTitle.value.trim() || file.name.replace(/\.[^.]+$/, '') || 'Upload';
        const res = await fetch(`/classroom/api/courses/${enc(courseId)}/decks/upload?title=${enc(title)}`, {
          method: 'POST', credentials: 'same-origin', body: file,
          headers: { 'content-type': file.type || 'application/octet-stream', 'x-csrf-token': cookie('herald_csrf'), accept: 'application/json' },
        });
        const json = await res.json().catch(() => null);
        if (!res.ok) throw new Error(json?.error?.message || `The server answered ${res.status}.`);
        upForm.reset();
        done();
        await loadDecks(json.deck.id);
        say(`Deck "${json.deck.title}" uploaded: ${json.deck.count} slide${json.deck.count === 1 ? '' : 's'}.`);
      } catch (err) { say(err.message, 'error'); } finally { button.disabled = false; }
    });

    // Done with the forms: they close, the new deck is picked in the list.
    const newSummary = h('summary', { text: 'New deck' });
    const newDeck = h('details', { class: 'deck-new' }, newSummary, h('div', { class: 'deck-forms' }, mdForm, upForm));
    function done() {
      newDeck.open = false;
      picker.focus();
    }

    return h('div', { class: 'slides-tools' },
      h('div', { class: 'controls deck-pick' },
        picker,
        run('Show this deck', () => (picker.value ? show(picker.value) : say('Create or upload a deck first.', 'error'))),
        run('Stop showing', () => show(null)),
        run('Delete this deck', async () => {
          if (!picker.value) return;
          const name = picker.selectedOptions[0]?.textContent || 'this deck';
          if (!window.confirm(`Delete ${name}? Its images are gone for good.`)) return;
          await call('DELETE', `decks/${enc(picker.value)}`);
          await loadDecks();
        })),
      h('p', { class: 'slides-mode' }, h('label', { for: 'slides-mode', text: 'Who sets the pace' }), modeSelect),
      newDeck);
  }

  async function loadDecks(select) {
    const res = await call('GET', `courses/${enc(courseId)}/decks`);
    decks = res.decks;
    const keep = select || picker.value;
    picker.replaceChildren(...(decks.length === 0
      ? [h('option', { value: '', text: 'No deck yet: create one below' })]
      : decks.map((d) => h('option', {
        value: d.id, selected: d.id === keep,
        text: `${d.title} (${d.source === 'pdf' ? 'PDF, ' : ''}${d.count} ${d.source === 'pdf' ? 'page' : 'slide'}${d.count === 1 ? '' : 's'})`,
      }))));
  }

  function pageCount(snap) { return (snap.deck && snap.deck.slides && snap.deck.slides.length) || 0; }

  /// The last page a student may open in the current mode.
  function lastOpen(snap) {
    const s = snap.slides || {};
    const count = pageCount(snap);
    if (s.mode === 'student') return Math.min(s.reached || 0, count - 1);
    return count - 1;
  }

  /// The page this screen shows.
  function current(snap) {
    const s = snap.slides || {};
    if (staff || s.mode === 'teacher' || own === null) return s.page || 0;
    return Math.max(0, Math.min(own, lastOpen(snap)));
  }

  /// Staff flips are sent one after the other, each from the page asked for
  /// last (`target`), so quick presses are neither lost nor reordered; the
  /// screen moves with the `slides` event, like everyone else's.
  let flips = Promise.resolve();
  let target = null;

  function step(delta) {
    const snap = ctx.snap();
    const s = snap.slides || {};
    const count = pageCount(snap);
    if (!count) return;
    if (staff) {
      const from = target ?? current(snap);
      const to = Math.max(0, Math.min(count - 1, from + delta));
      if (to === from || snap.state === 'ended') return;
      target = to;
      flips = flips
        .then(() => call('POST', `sessions/${enc(sid)}/slides/page`, { page: to }))
        .catch((err) => { say(err.message, 'error'); target = null; })
        .then(() => { if (target === to) target = null; });
      return;
    }
    const to = current(snap) + delta;
    if (s.mode === 'teacher' || to < 0 || to > lastOpen(snap)) return;
    own = to === s.page ? null : to; // caught up with the trainer: follow again
    draw(snap);
  }

  function slideContent(slide) {
    if (slide.image) {
      const img = h('img', { src: slide.image, alt: slide.title, class: 'slide-image', decoding: 'async' });
      if (slide.width && slide.height) { img.width = slide.width; img.height = slide.height; }
      return h('figure', { class: 'slide-figure' }, img);
    }
    const div = h('div', { class: 'slide-html' });
    div.append(safeFragment(slide.html || ''));
    return div;
  }

  function prefetch(snap, page) {
    const slides = snap.deck.slides;
    for (let p = page + 1; p <= page + PREFETCH && p < slides.length; p++) {
      const url = slides[p].image;
      if (url && !prefetched.has(url)) {
        prefetched.add(url);
        new Image().src = url;
      }
    }
  }

  function draw(snap) {
    const s = snap.slides || {};
    const deck = snap.deck;
    const count = pageCount(snap);
    if (!deck || !count) {
      deckId = null;
      own = null;
      if (drawn === 'none') return;
      drawn = 'none';
      deckTitle.textContent = '';
      stage.style.aspectRatio = '';
      stage.setAttribute('aria-label', 'Current slide');
      stage.replaceChildren(h('p', { class: 'empty slide-empty', text: staff ? 'No slides on screen. Pick a deck and show it.' : 'No slides on screen yet.' }));
      nav.hidden = true;
      follow.hidden = true;
      full.hidden = true;
      return;
    }
    if (deck.id !== deckId) { deckId = deck.id; own = null; }
    if (s.mode === 'teacher' || own === s.page) own = null; // locked, or together again: follow
    const page = current(snap);
    const slide = deck.slides[page];
    deckTitle.textContent = deck.title;
    const key = `${deck.id}:${page}`;
    if (key !== drawn) {
      drawn = key;
      stage.replaceChildren(slideContent(slide));
      // A landscape page keeps its own shape (a 4:3 PDF has no black bars).
      const landscape = slide.width && slide.height && slide.width >= slide.height;
      stage.style.aspectRatio = landscape ? `${slide.width} / ${slide.height}` : '';
      stage.setAttribute('aria-label', `Slide: ${slide.title}`);
      prefetch(snap, page);
    }
    indicator.textContent = `Page ${page + 1} of ${count}`;
    nav.hidden = false;
    full.hidden = !document.fullscreenEnabled;
    const ended = snap.state === 'ended';
    if (staff) {
      prev.disabled = ended || page <= 0;
      next.disabled = ended || page >= count - 1;
      follow.hidden = true;
      return;
    }
    const locked = s.mode === 'teacher';
    prev.hidden = locked;
    next.hidden = locked;
    prev.disabled = page <= 0;
    next.disabled = page >= lastOpen(snap);
    follow.hidden = locked;
    const away = own !== null && page !== s.page;
    const text = locked ? '' : away
      ? `The trainer is on page ${(s.page || 0) + 1}.`
      : (s.mode === 'student' ? `Following the trainer. You may go back to earlier pages (up to page ${lastOpen(snap) + 1}).` : 'Following the trainer. You may browse every page.');
    if (notice.textContent !== text) notice.textContent = text; // a live region: only real changes
    back.hidden = !away;
  }

  return {
    section,
    render(snap) {
      if (staff) {
        // Loaded once; again when another trainer shows a deck this page has not listed.
        const shown = snap.slides && snap.slides.deck_id;
        const unknown = shown && decks && !decks.some((d) => d.id === shown) && shown !== missing;
        if (decks === null || unknown) {
          missing = shown;
          decks = decks || [];
          loadDecks().catch((err) => say(err.message, 'error'));
        }
        const mode = (snap.slides && snap.slides.mode) || 'teacher';
        if (document.activeElement !== modeSelect) modeSelect.value = mode;
        tools.hidden = snap.state === 'ended';
      }
      draw(snap);
    },
    apply(m) {
      if (m.event !== 'slides') return null;
      const d = m.data || {};
      const patch = { slides: d.slides };
      if ('deck' in d) patch.deck = d.deck;
      return patch;
    },
  };
}
