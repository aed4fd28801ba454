// A live session's polls and quizzes: a panel of the session page (session.js).
// `section` is its card; `render(snap)` draws it from the snapshot; `apply(m,
// snap)` takes one event of the session's channels and answers the part of the
// snapshot it replaces (merged into it), or null when the event is not its own.
//
// Staff build polls (kind, question, options, quiz with correct options and a
// timer), open, close, show or hide results, reset, delete and export them, and
// watch the results live (staff events come on the staff channel, which carries
// results even while the audience's are hidden). Students answer the open poll,
// change their answer until it closes, and see the results once shown, and
// their quiz score. The page redraws at most a few times a second (tallies are
// coalesced on the server), and never rebuilds a form or a button row whose
// content did not change, so typing, choices and keyboard focus survive.

import { bdi, keyed, still } from './dom.js';

const KIND_LABEL = {
  single: 'Single choice', multiple: 'Multiple choice', yes_no: 'Yes / No',
  rating: 'Rating', text: 'Open text', word_cloud: 'Word cloud',
};
const STATE_LABEL = { draft: 'Draft', open: 'Open', closed: 'Closed' };
const QUIZ_POINTS = 100;
const SPEED_BONUS = 100;

/// A quiz answer's points, as the server counts them (crates/herald-classroom/src/polls/model.rs).
export function quizScore(poll, mine) {
  if (!poll || !mine || !Array.isArray(poll.correct)) return null;
  const a = mine.answer;
  const picked = Array.isArray(a) ? a : [a];
  const ok = picked.length === poll.correct.length && picked.every((v, i) => v === poll.correct[i]);
  if (!ok) return { correct: false, score: 0 };
  let bonus = 0;
  if (poll.duration_s) {
    const total = poll.duration_s * 1000;
    const left = Math.min(Math.max(total - mine.elapsed_ms, 0), total);
    bonus = Math.round(SPEED_BONUS * left / total);
  }
  return { correct: true, score: QUIZ_POINTS + bonus };
}

/// Sets one style property through the CSSOM (no inline style attribute).
const styled = (el, prop, value) => { el.style[prop] = value; return el; };
const pct = (n, of) => (of > 0 ? Math.round((100 * n) / of) : 0);

export function pollsPanel(ctx) {
  const { h, sid, staff, say, act, call } = ctx;
  const base = `sessions/${encodeURIComponent(sid)}/polls`;
  const staffChannel = `class:${sid}.staff`;
  const pollsApi = {
    create: (body) => call('POST', base, body),
    act: (id, verb, body = {}) => call('POST', `${base}/${encodeURIComponent(id)}/${verb}`, body),
    remove: (id) => call('DELETE', `${base}/${encodeURIComponent(id)}`),
    answer: (id, answer) => call('POST', `${base}/${encodeURIComponent(id)}/answer`, { answer }),
  };

  const body = h('div', { class: 'polls' });
  const list = h('ol', { class: 'poll-list', 'aria-label': 'Polls' });
  const board = h('div', { class: 'poll-board' });
  const scoreLine = h('p', { class: 'poll-score', id: 'poll-my-score', 'aria-live': 'polite' });
  const section = h('section', { 'aria-labelledby': 'polls-title', class: 'card polls-card' },
    h('h2', { id: 'polls-title', text: 'Polls' }), body);
  const cards = new Map(); // poll id -> {li, formKey, controlsKey, ...}
  let snap = ctx.snap();

  // ---- The builder (staff): built once, so a redraw never loses what is typed.
  function builder() {
    const kind = h('select', { id: 'poll-kind' },
      ...Object.entries(KIND_LABEL).map(([v, label]) => h('option', { value: v, text: label })));
    const question = h('input', { id: 'poll-question', maxlength: 300, required: true, autocomplete: 'off' });
    const options = h('ol', { class: 'poll-options', 'aria-label': 'Options' });
    const addOption = h('button', { type: 'button', class: 'secondary', text: 'Add an option' });
    const scale = h('input', { id: 'poll-scale', type: 'number', min: 2, max: 10, value: 5 });
    const quiz = h('input', { id: 'poll-quiz', type: 'checkbox' });
    const timer = h('input', { id: 'poll-timer', type: 'number', min: 5, max: 3600, placeholder: 'No timer' });
    const yesNoCorrect = h('fieldset', { class: 'poll-yesno-correct' },
      h('legend', { text: 'Correct answer' }),
      h('label', {}, h('input', { type: 'radio', name: 'poll-yesno-correct', value: '0', checked: true }), ' Yes'),
      h('label', {}, h('input', { type: 'radio', name: 'poll-yesno-correct', value: '1' }), ' No'));
    const optionsBox = h('fieldset', { class: 'poll-options-box' }, h('legend', { text: 'Options' }), options, addOption);
    const scaleBox = h('p', {}, h('label', { for: 'poll-scale', text: 'Scale: 1 to' }), scale);
    const quizBox = h('p', {}, h('label', { for: 'poll-quiz' }, quiz, ' Quiz: mark the correct answer, score the students'));

    function optionRow(value = '') {
      const li = h('li', { class: 'poll-option' });
      const input = h('input', { maxlength: 100, value, autocomplete: 'off' });
      const correct = h('input', { type: 'checkbox', class: 'poll-correct' });
      const remove = h('button', { type: 'button', class: 'secondary', text: 'Remove' });
      remove.addEventListener('click', () => {
        if (options.children.length <= 2) { say('A choice poll needs at least two options.', 'error'); return; }
        li.remove();
        relabel();
        options.querySelector('input')?.focus();
      });
      li.append(input, h('label', { class: 'inline' }, correct, ' Correct'), remove);
      return li;
    }
    function relabel() {
      [...options.children].forEach((li, i) => {
        const [input] = li.querySelectorAll('input');
        input.setAttribute('aria-label', `Option ${i + 1}`);
        input.setAttribute('placeholder', `Option ${i + 1}`);
        li.querySelector('.poll-correct').setAttribute('aria-label', `Option ${i + 1} is correct`);
        li.querySelector('button').setAttribute('aria-label', `Remove option ${i + 1}`);
      });
      addOption.disabled = options.children.length >= 10;
    }
    function reset() {
      options.replaceChildren(optionRow(), optionRow());
      relabel();
    }
    addOption.addEventListener('click', () => {
      options.append(optionRow());
      relabel();
      options.lastElementChild.querySelector('input').focus();
    });
    function shape() {
      const k = kind.value;
      const choice = k === 'single' || k === 'multiple';
      optionsBox.hidden = !choice;
      scaleBox.hidden = k !== 'rating';
      quizBox.hidden = !(choice || k === 'yes_no');
      if (quizBox.hidden) quiz.checked = false;
      yesNoCorrect.hidden = !(k === 'yes_no' && quiz.checked);
      for (const c of options.querySelectorAll('.poll-correct')) c.closest('label').hidden = !quiz.checked;
    }
    kind.addEventListener('change', shape);
    quiz.addEventListener('change', shape);
    reset();
    shape();

    const create = async (openIt) => {
      const k = kind.value;
      const req = { kind: k, question: question.value };
      if (k === 'single' || k === 'multiple') {
        const rows = [...options.children];
        req.options = rows.map((li) => li.querySelector('input').value);
        if (quiz.checked) req.correct = rows.flatMap((li, i) => (li.querySelector('.poll-correct').checked ? [i] : []));
      }
      if (k === 'yes_no' && quiz.checked) req.correct = [Number(yesNoCorrect.querySelector('input:checked')?.value || 0)];
      if (k === 'rating') req.scale = Number(scale.value);
      if (timer.value !== '') req.duration_s = Number(timer.value);
      const res = await pollsApi.create(req);
      const id = res.poll.id;
      if (openIt) await pollsApi.act(id, 'open');
      // The status line stays while it is true (app.js).
      if (openIt) say('The poll is open.', 'info', (s) => ((s.polls || {})[id] || {}).state !== 'open');
      else say('The poll was saved as a draft; open it when you are ready.', 'info', (s) => ((s.polls || {})[id] || {}).state !== 'draft');
      question.value = '';
      timer.value = '';
      quiz.checked = false;
      reset();
      shape();
      // Done with the form: it closes, the poll is in the list below.
      details.open = false;
      summary.focus();
    };
    const form = h('form', { class: 'poll-builder', 'aria-label': 'New poll' },
      h('p', {}, h('label', { for: 'poll-kind', text: 'Poll type' }), kind),
      h('p', {}, h('label', { for: 'poll-question', text: 'Poll question' }), question),
      optionsBox, scaleBox, quizBox, yesNoCorrect,
      h('p', {}, h('label', { for: 'poll-timer', text: 'Timer in seconds (optional, 5 to 3600)' }), timer),
      h('div', { class: 'controls' },
        act('Create and open', () => create(true)),
        act('Save as draft', () => create(false))));
    form.addEventListener('submit', (e) => e.preventDefault());
    const summary = h('summary', { text: 'New poll' });
    const details = h('details', { class: 'poll-new' }, summary, form);
    return details;
  }

  body.append(...(staff ? [builder(), list, board] : [scoreLine, list]));

  // ---- Views.
  const myAnswers = () => snap.my_poll_answers || {};

  function answerText(p, a) {
    if (a === undefined || a === null) return '';
    if (p.kind === 'rating') return `${a} out of ${p.scale}`;
    if (Array.isArray(a)) return a.map((i) => p.options[i]).join(', ');
    if (typeof a === 'number') return p.options[a] ?? String(a);
    return String(a);
  }

  function results(p) {
    const box = h('div', { class: 'poll-results' });
    const r = p.results;
    if (!r) {
      box.append(h('p', { class: 'muted', text: `${p.answers} answer${p.answers === 1 ? '' : 's'} so far. Results are hidden until the trainer shows them.` }));
      return box;
    }
    const correct = Array.isArray(p.correct) ? p.correct : [];
    if (r.counts) {
      const labels = p.kind === 'rating' ? r.counts.map((_, i) => `${i + 1} ★`) : p.options;
      const bars = h('ul', { class: 'poll-bars', 'aria-label': `Results: ${p.question}` });
      r.counts.forEach((n, i) => {
        const share = pct(n, p.answers);
        const right = correct.includes(i);
        bars.append(h('li', { class: right ? 'bar correct' : 'bar' },
          h('span', { class: 'bar-text' }, bdi(labels[i]), `: ${n} (${share} %)`, right ? h('strong', { class: 'badge', text: ' ✓ correct' }) : null),
          h('span', { class: 'bar-track', 'aria-hidden': 'true' }, styled(h('span', { class: 'bar-fill' }), 'width', `${share}%`))));
      });
      box.append(bars);
      if (p.kind === 'rating' && r.average !== null && r.average !== undefined) {
        box.append(h('p', { class: 'poll-average', text: `Average: ${r.average} out of ${p.scale}` }));
      }
    } else if (r.words) {
      const max = r.words.reduce((m, [, n]) => Math.max(m, n), 1);
      box.append(r.words.length === 0
        ? h('p', { class: 'muted', text: 'No word yet.' })
        : h('ul', { class: 'word-cloud', 'aria-label': `Word cloud: ${p.question}` },
          ...r.words.map(([w, n]) => styled(h('li', {}, w, h('span', { class: 'count', text: ` (${n})` })),
            'fontSize', `${(0.9 + (1.6 * n) / max).toFixed(2)}rem`))));
    } else if (r.texts) {
      box.append(r.texts.length === 0
        ? h('p', { class: 'muted', text: 'No answer yet.' })
        : h('ul', { class: 'poll-texts', 'aria-label': `Answers: ${p.question}` }, ...r.texts.map((t) => h('li', { text: t }))));
      if (r.total > r.texts.length) box.append(h('p', { class: 'muted', text: `Showing the newest ${r.texts.length} of ${r.total}; export the CSV for all.` }));
    }
    box.append(h('p', { class: 'muted', text: `${p.answers} answer${p.answers === 1 ? '' : 's'}.` }));
    return box;
  }

  function timeLeft(p) {
    if (p.state !== 'open' || !p.closes_at) return '';
    const s = Math.ceil((p.closes_at - Date.now()) / 1000);
    return s > 0 ? `Time left: ${s} s` : 'Time is up.';
  }

  function answerForm(p, mine) {
    const id = `poll-${p.id}`;
    const form = h('form', { class: 'poll-answer', 'aria-label': `Answer: ${p.question}` });
    let read;
    if (p.kind === 'single' || p.kind === 'yes_no' || p.kind === 'multiple' || p.kind === 'rating') {
      const multiple = p.kind === 'multiple';
      const choices = p.kind === 'rating'
        ? Array.from({ length: p.scale }, (_, i) => ({ value: i + 1, label: `${i + 1} ★`, name: `${i + 1} out of ${p.scale}` }))
        : p.options.map((o, i) => ({ value: i, label: o, name: o }));
      const picked = mine ? (Array.isArray(mine.answer) ? mine.answer : [mine.answer]) : [];
      const fs = h('fieldset', { class: p.kind === 'rating' ? 'poll-choices stars' : 'poll-choices' },
        h('legend', { text: multiple ? 'Choose one or more' : 'Choose one' }),
        ...choices.map((c, i) => h('label', { for: `${id}-${i}` },
          h('input', {
            id: `${id}-${i}`, type: multiple ? 'checkbox' : 'radio', name: id, value: c.value,
            checked: picked.includes(c.value), 'aria-label': c.name,
          }), ` ${c.label}`)));
      form.append(fs);
      read = () => {
        const values = [...fs.querySelectorAll('input:checked')].map((x) => Number(x.value));
        return multiple ? values : values[0];
      };
    } else {
      const cloud = p.kind === 'word_cloud';
      const input = h(cloud ? 'input' : 'textarea', {
        id: `${id}-text`, maxlength: cloud ? 100 : 200, rows: 2, autocomplete: 'off',
      });
      input.value = mine ? String(mine.answer) : '';
      form.append(h('p', {}, h('label', { for: `${id}-text`, text: cloud ? 'Your words (one to three)' : 'Your answer' }), input));
      read = () => input.value;
    }
    const send = h('button', { type: 'submit', text: mine ? 'Change my answer' : 'Send my answer' });
    form.append(send);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const answer = read();
      if (answer === undefined || (Array.isArray(answer) && answer.length === 0)) { say('Choose an answer first.', 'error'); return; }
      send.disabled = true;
      try {
        const res = await pollsApi.answer(p.id, answer);
        ctx.update({ my_poll_answers: { ...myAnswers(), ...res.my_poll_answers } });
        say('Your answer was sent. You can change it until the poll closes.', 'info',
          (s) => ((s.polls || {})[p.id] || {}).state !== 'open' || s.state !== 'live');
      } catch (err) {
        say(err.message, 'error');
      } finally {
        send.disabled = false;
      }
    });
    return form;
  }

  function controls(p) {
    const row = h('div', { class: 'controls' });
    if (p.state !== 'open') row.append(act(p.state === 'draft' ? 'Open' : 'Open again', () => pollsApi.act(p.id, 'open')));
    else row.append(act('Close', () => pollsApi.act(p.id, 'close')));
    row.append(p.visible
      ? act('Hide results', () => pollsApi.act(p.id, 'reveal', { visible: false }))
      : act('Show results', () => pollsApi.act(p.id, 'reveal', { visible: true })));
    row.append(act('Reset', async () => { await pollsApi.act(p.id, 'reset'); say('The answers were deleted.'); }),
      act('Delete', async () => { await pollsApi.remove(p.id); say('The poll was deleted.'); }),
      h('a', { class: 'button-link', href: `/classroom/api/${base}/${encodeURIComponent(p.id)}.csv`, download: `poll-${p.id}.csv`, text: 'Export CSV' }));
    return row;
  }

  function card(p) {
    let c = cards.get(p.id);
    if (!c) {
      const title = h('h3', { class: 'poll-question', id: `poll-${p.id}-title` });
      const meta = h('p', { class: 'meta' });
      const timer = h('p', { class: 'poll-timer', 'aria-live': 'off' });
      const ctl = h('div');
      const mineBox = h('div', { class: 'poll-mine' });
      const form = h('div');
      const res = h('div');
      const li = h('li', { class: 'poll', 'aria-labelledby': `poll-${p.id}-title` }, title, meta, timer, ctl, mineBox, form, res);
      c = { li, title, meta, timer, ctl, mineBox, form, res, formKey: null, ctlKey: null };
      cards.set(p.id, c);
    }
    const mine = myAnswers()[p.id];
    const expired = !!(p.closes_at && p.closes_at <= Date.now());
    // Nothing of this poll changed since it was drawn: leave it as it is.
    if (c.p === p && c.mine === mine && c.session === snap.state && c.expired === expired) return c.li;
    Object.assign(c, { p, mine, session: snap.state, expired });
    c.li.dataset.state = p.state;
    c.title.textContent = p.question;
    c.meta.replaceChildren(`${KIND_LABEL[p.kind] || p.kind}${p.quiz ? ' quiz' : ''} · `,
      h('strong', { class: 'badge', text: STATE_LABEL[p.state] || p.state }),
      staff ? ` · ${p.visible ? 'Results shown to everyone' : 'Results hidden from students'}` : '');
    c.timer.dataset.closesAt = p.state === 'open' && p.closes_at ? p.closes_at : '';
    c.timer.textContent = timeLeft(p);
    if (staff) {
      const key = `${p.state}|${p.visible}`;
      if (c.ctlKey !== key) { c.ctl.replaceChildren(controls(p)); c.ctlKey = key; }
    }
    // Students answer an open poll while the session is live.
    const canAnswer = ctx.role === 'student' && snap.state === 'live' && p.state === 'open' && !expired;
    // The form is made once per open poll: a choice or a text being typed survives.
    const formKey = canAnswer ? `${p.kind}|${JSON.stringify(p.options)}|${p.scale}` : '';
    if (c.formKey !== formKey) { c.form.replaceChildren(canAnswer ? answerForm(p, mine) : ''); c.formKey = formKey; }
    const send = c.form.querySelector('button[type=submit]');
    if (send) send.textContent = mine ? 'Change my answer' : 'Send my answer';
    c.mineBox.replaceChildren();
    if (mine) {
      const scored = mine.score !== undefined ? mine : (p.state === 'closed' && p.visible ? quizScore(p, mine) : null);
      c.mineBox.append(h('p', { class: 'poll-my-answer' }, h('strong', { text: 'Your answer: ' }), answerText(p, mine.answer)));
      if (scored && scored.score !== undefined) {
        c.mineBox.append(h('p', { class: scored.correct ? 'poll-verdict right' : 'poll-verdict wrong', text: scored.correct ? `Correct: ${scored.score} points.` : 'Not correct: 0 points.' }));
      }
    }
    c.res.replaceChildren(p.state === 'draft' ? h('p', { class: 'muted', text: 'Draft: students do not see it yet.' }) : results(p));
    return c.li;
  }

  function renderScore() {
    let total = 0;
    let any = false;
    for (const [id, mine] of Object.entries(myAnswers())) {
      const p = (snap.polls || {})[id];
      if (!p || !p.quiz) continue;
      const s = mine.score !== undefined ? mine : (p.state === 'closed' && p.visible ? quizScore(p, mine) : null);
      if (s && s.score !== undefined) { total += s.score; any = true; }
    }
    scoreLine.textContent = any ? `Your quiz score: ${total} points.` : '';
  }

  let drawnBoard = null;
  function renderBoard() {
    const lb = snap.leaderboard;
    const anyQuiz = Object.values(snap.polls || {}).some((p) => p.quiz);
    if (drawnBoard && drawnBoard[0] === lb && drawnBoard[1] === anyQuiz) return;
    drawnBoard = [lb, anyQuiz];
    if (!lb || !anyQuiz) { board.replaceChildren(); return; }
    board.replaceChildren(h('h3', { id: 'leaderboard-title', text: 'Leaderboard' }),
      lb.top.length === 0
        ? h('p', { class: 'muted', text: 'No quiz answer yet.' })
        : h('ol', { class: 'leaderboard', 'aria-labelledby': 'leaderboard-title' },
          ...lb.top.map((r) => h('li', {}, bdi(r.name), `: ${r.score} points (${r.correct} of ${r.answered} correct)`))),
      lb.players > lb.top.length ? h('p', { class: 'muted', text: `The best ${lb.top.length} of ${lb.players}; export a quiz for everyone.` }) : '');
  }

  function render(s) {
    snap = s;
    const polls = Object.values(s.polls || {}).filter(Boolean);
    polls.sort((a, b) => (b.state === 'open') - (a.state === 'open') || b.created_at - a.created_at);
    for (const id of [...cards.keys()]) if (!(s.polls || {})[id]) cards.delete(id);
    const rows = polls.length === 0 ? [null] : polls;
    keyed(list, rows, (p) => (p ? p.id : ''), (p) => (p
      ? { el: card(p), update: card }
      : still(h('li', { class: 'empty', text: staff ? 'No poll yet: create one above.' : 'No poll yet.' }))));
    if (staff) renderBoard(); else renderScore();
  }

  // The quiz countdown, once a second while the panel is on the page.
  let mounted = false;
  const tick = setInterval(() => {
    if (!section.isConnected) {
      if (mounted) clearInterval(tick); // the page changed
      return;
    }
    mounted = true;
    let expired = false;
    for (const el of section.querySelectorAll('.poll-timer')) {
      const at = Number(el.dataset.closesAt);
      if (!at) continue;
      const left = Math.ceil((at - Date.now()) / 1000);
      el.textContent = left > 0 ? `Time left: ${left} s` : 'Time is up.';
      if (left <= 0) expired = true;
    }
    if (expired && section.querySelector('.poll-answer')) render(snap); // the form goes away
  }, 1000);

  function apply(m, s) {
    if (m.event !== 'polls' && m.event !== 'poll.tally') return null;
    // Staff take poll events from the staff channel only (they carry the results).
    if (staff && m.channel !== staffChannel) return {};
    const d = m.data || {};
    const polls = { ...(s.polls || {}) };
    const mine = { ...(s.my_poll_answers || {}) };
    const changes = m.event === 'polls' ? d.polls : d.tallies;
    for (const [id, v] of Object.entries(changes || {})) {
      if (v === null) { delete polls[id]; delete mine[id]; continue; }
      if (m.event === 'polls') polls[id] = v;
      else if (polls[id]) polls[id] = { ...polls[id], ...v };
      if (v.answers === 0) delete mine[id]; // reset
    }
    const patch = { polls };
    if (!staff) patch.my_poll_answers = mine;
    if (d.leaderboard) patch.leaderboard = d.leaderboard;
    return patch;
  }

  return { section, render, apply };
}
