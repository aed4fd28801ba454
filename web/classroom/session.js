// A live session's page, for the trainer and for students: the session's state,
// who is here (Herald presence), and the raised hands. It follows the snapshot +
// cursor recipe (docs/classroom.md): load the snapshot with its cursor, render it,
// subscribe to the session's channel from that cursor, and replace the part of
// the state each event carries. A reload or a late join lands on the same state.

import { Herald } from '/sdk/herald.js';
import { api, call } from './api.js';
import { slidesPanel } from './slides.js';
import { pollsPanel } from './polls.js';
import { groupsPanel } from './groups.js';
import { bdi, keepFocus, keyed, still, text } from './dom.js';

const STATE_LABEL = { scheduled: 'Not started', live: 'Live', paused: 'Paused', ended: 'Ended' };
const ACTIVITY_LABEL = { active: 'Active', idle: 'Idle', away: 'Away' };
/// No key, pointer or touch for this long: idle.
const IDLE_AFTER_MS = 2 * 60 * 1000;
const ROLE_LABEL = { trainer: 'Trainer', co_trainer: 'Co-trainer', student: 'Student', observer: 'Observer' };

export const sessionsApi = {
  list: (courseId) => call('GET', `courses/${encodeURIComponent(courseId)}/sessions`),
  create: (courseId, title) => call('POST', `courses/${encodeURIComponent(courseId)}/sessions`, { title }),
  get: (sid) => call('GET', `sessions/${encodeURIComponent(sid)}`),
  token: (sid) => call('GET', `sessions/${encodeURIComponent(sid)}/token`),
  act: (sid, verb) => call('POST', `sessions/${encodeURIComponent(sid)}/${verb}`, {}),
  raise: (sid) => call('POST', `sessions/${encodeURIComponent(sid)}/hand`, {}),
  lower: (sid) => call('DELETE', `sessions/${encodeURIComponent(sid)}/hand`),
  lowerOf: (sid, user) => call('DELETE', `sessions/${encodeURIComponent(sid)}/hands/${encodeURIComponent(user)}`),
  lowerAll: (sid) => call('DELETE', `sessions/${encodeURIComponent(sid)}/hands`),
  ask: (sid, text, anonymous) => call('POST', `sessions/${encodeURIComponent(sid)}/questions`, { text, anonymous }),
  edit: (sid, q, text) => call('PATCH', `sessions/${encodeURIComponent(sid)}/questions/${encodeURIComponent(q)}`, { text }),
  withdraw: (sid, q) => call('DELETE', `sessions/${encodeURIComponent(sid)}/questions/${encodeURIComponent(q)}`),
  vote: (sid, q) => call('POST', `sessions/${encodeURIComponent(sid)}/questions/${encodeURIComponent(q)}/vote`, {}),
  unvote: (sid, q) => call('DELETE', `sessions/${encodeURIComponent(sid)}/questions/${encodeURIComponent(q)}/vote`),
  setState: (sid, q, state) => call('POST', `sessions/${encodeURIComponent(sid)}/questions/${encodeURIComponent(q)}/state`, { state }),
  answer: (sid, q, mode, text) => call('POST', `sessions/${encodeURIComponent(sid)}/questions/${encodeURIComponent(q)}/answer`, { mode, text }),
  activity: (sid, activity) => call('POST', `sessions/${encodeURIComponent(sid)}/activity`, { activity }),
  qa: (sid, settings) => call('PATCH', `sessions/${encodeURIComponent(sid)}/qa`, settings),
};

const Q_STATE = { pending: 'Held for moderation', published: '', starred: 'Starred', answering: 'Answering now', answered: 'Answered', dismissed: 'Dismissed' };

/// The open session page's live parts, closed when the page changes.
let current = null;

export function leaveSession() {
  if (current) {
    current.close();
    current = null;
  }
}

/// Renders the session `sid` into `root`; `ui` gives the page's helpers.
export async function sessionView(root, sid, ui) {
  leaveSession();
  const { h, say, me } = ui;
  const first = await sessionsApi.get(sid);
  const session = first.session;
  const role = first.role;
  const staff = role === 'trainer' || role === 'co_trainer';
  let snap = first.snapshot;
  let herald = null;
  const hereCount = h('p', { id: 'here-count', class: 'muted' });

  const stateEl = h('strong', { id: 'session-state' });
  const handsList = h('ol', { 'aria-label': 'Raised hands', class: 'hands' });
  const onlineList = h('ul', { 'aria-label': 'Who is here', class: 'online' });
  const controls = h('div', { class: 'controls' });
  const live = h('span', { id: 'connection', class: 'muted', text: 'Connecting…' });
  const qaBox = h('div', { class: 'qa' });
  const questionsList = h('ol', { 'aria-label': 'Questions', class: 'questions' });
  let sortBy = 'votes';
  let showState = 'all'; // the queue's filter: all, or one question state

  function act(label, fn) {
    return h('button', {
      type: 'button',
      onclick: async (e) => {
        const button = e.currentTarget;
        button.disabled = true;
        try { await fn(); } catch (err) { say(err.message, 'error'); } finally { button.disabled = false; }
      },
    }, label);
  }

  // Every part below is drawn once and then updated in place on each event,
  // so what someone is typing, choosing or focusing survives (dom.js).
  let controlsKey = null;
  function renderState() {
    text(stateEl, STATE_LABEL[snap.state] || snap.state);
    const mine = !staff && (snap.hands || []).some((x) => x.user_id === me().id);
    const key = `${snap.state}|${mine}`;
    if (key === controlsKey) return;
    controlsKey = key;
    const back = keepFocus();
    controls.replaceChildren();
    if (staff) {
      if (snap.state === 'scheduled') controls.append(act('Start the session', () => sessionsApi.act(sid, 'start')));
      if (snap.state === 'live') controls.append(act('Pause', () => sessionsApi.act(sid, 'pause')));
      if (snap.state === 'paused') controls.append(act('Resume', () => sessionsApi.act(sid, 'resume')));
      if (snap.state !== 'ended') controls.append(act('End the session', () => sessionsApi.act(sid, 'end')));
    } else if (snap.state === 'live') {
      controls.append(mine
        ? act('Lower my hand', () => sessionsApi.lower(sid))
        : act('Raise my hand', () => sessionsApi.raise(sid)));
    }
    back();
  }

  function renderHands() {
    const hands = snap.hands || [];
    const rows = hands.length === 0 ? [{ key: 'none' }] : hands.map((x) => ({ key: `hand:${x.user_id}`, hand: x }));
    if (staff && hands.length > 1) rows.push({ key: 'all' });
    keyed(handsList, rows, (r) => r.key, (r) => {
      if (r.key === 'none') return still(h('li', { class: 'empty', text: 'No hand raised.' }));
      if (r.key === 'all') return still(h('li', { class: 'all' }, act('Lower all hands', () => sessionsApi.lowerAll(sid))));
      const x = r.hand;
      return still(h('li', {}, x.name,
        staff ? [' ', act(`Lower ${x.name}'s hand`, () => sessionsApi.lowerOf(sid, x.user_id))] : []));
    });
  }

  /// Who is here: how many for everyone; for staff the list (the server sends
  /// it coalesced, once a second at most: docs/classroom.md, "Who is here").
  function renderOnline() {
    const count = snap.here_count || 0;
    text(hereCount, `${count} ${count === 1 ? 'person' : 'people'} here now`);
    if (!staff) return;
    const people = Object.entries(snap.here || {}).sort(([, a], [, b]) => a.name.localeCompare(b.name));
    keyed(onlineList, people, ([id]) => id, () => {
      const name = h('span', { class: 'name' });
      const roleEl = h('span', { class: 'role' });
      const activityEl = h('span', { class: 'activity' });
      const el = h('li', {}, name, ' ', roleEl, activityEl);
      return {
        el,
        update([id, p]) {
          const a = (snap.activity || {})[id] || 'active';
          const r = (snap.roles || {})[id] || p.role;
          text(name, p.name);
          text(roleEl, ROLE_LABEL[r] || r || '');
          el.dataset.activity = a;
          activityEl.className = `activity ${a}`;
          text(activityEl, a === 'active' ? '' : ` · ${ACTIVITY_LABEL[a]}`);
        },
      };
    });
  }

  /// Keeps what only the caller's own snapshot knows (own questions, votes, answers, pending), from
  /// the small answer `{question, mine}` of a Q&A action (ask, edit, withdraw, vote, unvote). The
  /// public list itself follows the `questions` events.
  function mine(res) {
    if (!res || !res.mine) return;
    const m = res.mine;
    snap = { ...snap, my_questions: m.my_questions, my_votes: m.my_votes, my_answers: m.my_answers, pending: m.pending };
    render();
  }

  /// One question of the queue: drawn once, updated in place. Its answer box
  /// (staff) and its edit box (the author) live as long as the question does.
  function questionView(first) {
    const id = first.id;
    let q = first;
    const textEl = h('p', { class: 'text' });
    const meta = h('p', { class: 'meta' });
    const answer = h('p', { class: 'answer' }, h('strong', { text: 'Answer: ' }), h('span'));
    const privately = h('p', { class: 'answer private' }, h('strong'), h('span'));
    const note = h('p', { class: 'muted' });
    const buttons = h('div', { class: 'controls' });
    const el = h('li', { class: 'question' }, textEl, meta, answer, privately, note, buttons);
    let buttonsKey = null;

    // The author's edit box, open until saved or cancelled.
    let editing = null;
    const editButton = () => buttons.querySelector('.edit-question');
    function closeEdit() {
      if (!editing) return;
      editing.remove();
      editing = null;
      textEl.hidden = false;
      if (editButton()) editButton().hidden = false;
    }
    function openEdit() {
      if (editing) { editing.querySelector('input').focus(); return; }
      const input = h('input', { 'aria-label': 'Edit your question', maxlength: 500 });
      input.value = q.text;
      editing = h('form', { class: 'edit controls' }, input,
        h('button', { type: 'submit', text: 'Save my question' }),
        h('button', { type: 'button', class: 'secondary', text: 'Cancel', onclick: () => { closeEdit(); editButton()?.focus(); } }));
      editing.addEventListener('submit', async (e) => {
        e.preventDefault();
        const save = editing.querySelector('button[type=submit]');
        save.disabled = true;
        try {
          const res = await sessionsApi.edit(sid, id, input.value);
          closeEdit();
          mine(res);
        } catch (err) { say(err.message, 'error'); save.disabled = false; }
      });
      textEl.hidden = true;
      if (editButton()) editButton().hidden = true;
      textEl.after(editing);
      input.focus();
    }

    // Staff's answer box, kept while the question is open.
    const answerInput = h('input', { 'aria-label': `Answer to: ${first.text}`, placeholder: 'Type an answer', maxlength: 2000 });
    const answerRow = h('div', { class: 'controls answer-row' }, answerInput,
      act('Answer publicly', async () => { await sessionsApi.answer(sid, id, 'public', answerInput.value); answerInput.value = ''; }),
      act('Answer privately', async () => { await sessionsApi.answer(sid, id, 'private', answerInput.value); answerInput.value = ''; }),
      act('Answered live', () => sessionsApi.answer(sid, id, 'live')));

    return {
      el,
      update(next) {
        q = next;
        const own = (snap.my_questions || []).includes(id);
        const voted = (snap.my_votes || []).includes(id);
        const open = !['answered', 'dismissed'].includes(q.state);
        const isLive = snap.state === 'live';
        el.className = `question ${q.state}`;
        el.dataset.state = q.state;
        text(textEl, q.text);
        answerInput.setAttribute('aria-label', `Answer to: ${q.text}`);
        meta.replaceChildren(bdi(q.author || 'Anonymous'), ` · ${q.votes} vote${q.votes === 1 ? '' : 's'}`,
          ...(Q_STATE[q.state] ? [' · ', h('strong', { class: 'badge', text: Q_STATE[q.state] })] : []));
        answer.hidden = !q.answer;
        text(answer.lastChild, q.answer || '');
        // A private answer: its text for the asker and for staff; that there is one for everyone else.
        const privateText = staff ? (snap.private_answers || {})[id] : (snap.my_answers || {})[id];
        privately.hidden = !privateText;
        text(privately.firstChild, staff ? 'Answered privately: ' : 'Private answer to you: ');
        text(privately.lastChild, privateText || '');
        const noteText = q.answer_mode === 'private' && !privateText ? 'Answered privately.'
          : q.answer_mode === 'live' ? 'Answered live.' : '';
        note.hidden = !noteText;
        text(note, noteText);
        if (!(own && open && isLive)) closeEdit();

        const key = [own, voted, open, isLive, q.state, snap.state].join('|');
        if (key !== buttonsKey) {
          buttonsKey = key;
          const back = keepFocus();
          const row = [];
          // Votes: on open questions only (the server refuses the others); a vote can be taken back.
          if (!own && isLive && voted) row.push(act('Remove my vote', async () => mine(await sessionsApi.unvote(sid, id))));
          if (!own && isLive && !voted && open) row.push(act('Upvote', async () => mine(await sessionsApi.vote(sid, id))));
          if (own && open && isLive) row.push(h('button', { type: 'button', class: 'edit-question', hidden: !!editing, onclick: openEdit }, 'Edit my question'));
          if (own && open) row.push(act('Withdraw my question', async () => mine(await sessionsApi.withdraw(sid, id))));
          if (staff) {
            if (q.state === 'pending') row.push(act('Publish', () => sessionsApi.setState(sid, id, 'published')));
            if (q.state !== 'starred' && open) row.push(act('Star', () => sessionsApi.setState(sid, id, 'starred')));
            if (q.state !== 'answering' && open) row.push(act('Answer now', () => sessionsApi.setState(sid, id, 'answering')));
            if (q.state !== 'dismissed') row.push(act('Dismiss', () => sessionsApi.setState(sid, id, 'dismissed')));
            if (!open) row.push(act('Reopen', () => sessionsApi.setState(sid, id, 'published')));
          }
          buttons.replaceChildren(...row);
          buttons.hidden = row.length === 0;
          const answering = staff && open;
          if (answering && !answerRow.isConnected) el.append(answerRow);
          if (!answering && answerRow.isConnected) answerRow.remove();
          back();
        }
      },
    };
  }

  // The Q&A box: the asking form (students) or the settings (staff), and the
  // queue's sort and filter. Built once.
  const heldBack = h('p', { class: 'muted', id: 'held-back', hidden: true });
  const askText = h('textarea', { id: 'question-text', required: true, maxlength: 500, rows: 2 });
  const askAnon = h('input', { id: 'question-anon', type: 'checkbox' });
  const askAnonRow = h('p', {}, h('label', { for: 'question-anon' }, askAnon, ' Ask anonymously'));
  const askForm = h('form', { 'aria-label': 'Ask a question' },
    h('p', {}, h('label', { for: 'question-text', text: 'Your question' }), askText),
    askAnonRow,
    h('button', { type: 'submit', text: 'Ask' }));
  askForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const button = askForm.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      const res = await sessionsApi.ask(sid, askText.value, !askAnonRow.hidden && askAnon.checked);
      askForm.reset();
      mine(res);
      const qid = res.question && res.question.id;
      if (res.question && res.question.state === 'pending') {
        say('Your question was sent; it appears once the trainer publishes it.', 'info', (s) => !(s.pending || {})[qid]);
      } else {
        say('Your question was posted.', 'info', (s) => !(s.questions || {})[qid]);
      }
    } catch (err) { say(err.message, 'error'); } finally { button.disabled = false; }
  });
  const toggle = (id, label, key) => h('label', { for: id },
    h('input', {
      id, type: 'checkbox',
      onchange: async (e) => {
        try { await sessionsApi.qa(sid, { [key]: e.target.checked }); } catch (err) { e.target.checked = !e.target.checked; say(err.message, 'error'); }
      },
    }), ` ${label}`);
  const settings = staff ? [toggle('qa-moderation', 'Hold new questions for moderation', 'moderation'),
    toggle('qa-anonymous', 'Allow anonymous questions', 'anonymous')] : [];
  const askSlot = h('div');
  const sort = h('select', { id: 'question-sort', 'aria-label': 'Sort questions by' },
    h('option', { value: 'votes', text: 'Most votes' }),
    h('option', { value: 'time', text: 'Newest' }));
  sort.addEventListener('change', () => { sortBy = sort.value; renderQuestions(); });
  const STATE_NAME = { all: 'All questions', pending: 'Held for moderation', published: 'Published', starred: 'Starred', answering: 'Answering now', answered: 'Answered', dismissed: 'Dismissed' };
  const filter = h('select', { id: 'question-filter', 'aria-label': 'Show questions' },
    ...Object.keys(STATE_NAME).filter((x) => staff || x !== 'pending').map((x) => h('option', { value: x, text: STATE_NAME[x] })));
  filter.addEventListener('change', () => { showState = filter.value; renderQuestions(); });
  qaBox.append(heldBack, ...settings, askSlot, h('p', { class: 'queue-controls' }, sort, ' ', filter));

  function renderQuestions() {
    const all = { ...(snap.pending || {}), ...(snap.questions || {}) };
    const list = Object.values(all).filter(Boolean).filter((q) => showState === 'all' || q.state === showState);
    list.sort(sortBy === 'votes'
      ? (a, b) => (b.state === 'answering') - (a.state === 'answering') || b.votes - a.votes || a.created_at - b.created_at
      : (a, b) => b.created_at - a.created_at);
    const rows = list.length === 0 ? [{ id: '', empty: showState === 'all' ? 'No question yet.' : 'No question in this state.' }] : list;
    keyed(questionsList, rows, (q) => (q.empty ? `empty:${q.empty}` : `q:${q.id}`),
      (q) => (q.empty ? still(h('li', { class: 'empty', text: q.empty })) : questionView(q)));
    const qa = snap.qa || {};
    heldBack.hidden = staff || !snap.held_back;
    text(heldBack, snap.held_back ? `${snap.held_back} question${snap.held_back === 1 ? '' : 's'} held back by moderation.` : '');
    if (staff) {
      qaBox.querySelector('#qa-moderation').checked = !!qa.moderation;
      qaBox.querySelector('#qa-anonymous').checked = !!qa.anonymous;
    } else {
      const asking = snap.state === 'live';
      if (asking !== askForm.isConnected) askSlot.replaceChildren(asking ? askForm : '');
      askAnonRow.hidden = !qa.anonymous;
    }
  }

  // The panels of later slices, each in its own module (slides.js, polls.js,
  // groups.js): they draw their card from the snapshot and take their events.
  const ctx = {
    sid, role, staff, courseId: session.course_id, h, say, act, call, me,
    snap: () => snap,
    /// Merges `patch` into the snapshot and draws the page again.
    update: (patch) => { snap = { ...snap, ...patch }; render(); },
    reload: () => reloadSnapshot(),
  };
  const panels = [slidesPanel(ctx), pollsPanel(ctx), groupsPanel(ctx)];

  function render() {
    const back = keepFocus();
    renderState();
    renderHands();
    renderQuestions();
    for (const p of panels) p.render(snap);
    ui.settle(snap);
    back();
  }

  /// Applies one event of the session channel: each carries the new value of what changed.
  function apply(m) {
    const d = m.data || {};
    if (m.channel === `class:${sid}` && typeof m.offset === 'number' && m.offset <= snapOffset) return;
    if (m.event === 'reload') {
      // A change too large to push (docs/classroom.md): the snapshot has it.
      reloadSnapshot();
      return;
    }
    for (const p of panels) {
      const patch = p.apply(m, snap);
      if (patch) { snap = { ...snap, ...patch }; render(); return; }
    }
    if (m.event === 'session.state') {
      snap = { ...snap, ...(typeof d === 'string' ? { state: d } : d) };
    } else if (m.event === 'hands') {
      snap = { ...snap, hands: Array.isArray(d) ? d : d.hands || [] };
    } else if (m.event === 'questions') {
      if (staff && d.held_back_rev !== undefined && d.held_back_rev !== snap.held_back_rev) {
        // Something changed among the held-back questions only staff see: reload.
        reloadSnapshot();
        return;
      }
      const questions = { ...(snap.questions || {}) };
      const pending = { ...(snap.pending || {}) };
      for (const [id, v] of Object.entries(d.questions || {})) {
        if (v === null) delete questions[id];
        else { questions[id] = v; delete pending[id]; }
      }
      // Questions whose only change was their votes: the new count alone.
      for (const [id, n] of Object.entries(d.votes || {})) {
        if (questions[id]) questions[id] = { ...questions[id], votes: n };
      }
      snap = { ...snap, questions, pending, held_back: d.held_back, held_back_rev: d.held_back_rev };
    } else if (m.event === 'qa') {
      snap = { ...snap, qa: d.qa };
    } else if (m.event === 'here') {
      // Staff channel: {joined:{user_id:{name,role}}, left:[user_id], count}.
      const here = { ...(snap.here || {}), ...(d.joined || {}) };
      for (const uid of d.left || []) delete here[uid];
      snap = { ...snap, here, here_count: d.count ?? Object.keys(here).length };
      renderOnline();
      for (const [uid, info] of Object.entries(d.joined || {})) for (const x of panels) x.joined?.(uid, info);
      return;
    } else if (m.event === 'here.count') {
      snap = { ...snap, here_count: d.count };
      renderOnline();
      return;
    } else if (m.event === 'activity') {
      const activity = { ...(snap.activity || {}) };
      for (const [uid, a] of Object.entries(d.activity || {})) {
        if (a === 'active') delete activity[uid]; else activity[uid] = a;
      }
      snap = { ...snap, activity };
      renderOnline();
      return;
    } else if (m.event === 'answer.private') {
      // The asker's own channel carries `my_answers`, the staff channel `private_answers`.
      const merge = (was, changes) => {
        const next = { ...(was || {}) };
        for (const [qid, t] of Object.entries(changes || {})) { if (t === null) delete next[qid]; else next[qid] = t; }
        return next;
      };
      snap = { ...snap, my_answers: merge(snap.my_answers, d.my_answers), private_answers: merge(snap.private_answers, d.private_answers) };
    } else if (m.event === 'roster.role' && d.roles) {
      // The roles changed during the session: {user_id: role}.
      snap = { ...snap, roles: { ...(snap.roles || {}), ...d.roles } };
      renderOnline();
      if (me() && d.roles[me().id] && d.roles[me().id] !== role) { ui.reload(); return; }
    }
    render();
  }

  /// The offset of the session channel the snapshot is valid at: events at or
  /// below it are already in it (they can still arrive after a reload).
  let snapOffset = first.offset || 0;

  async function reloadSnapshot() {
    const again = await sessionsApi.get(sid);
    snap = again.snapshot;
    snapOffset = again.offset || 0;
    render();
  }

  // Staff: the course's join link, to invite students without leaving the page.
  const invite = h('p', { class: 'muted invite' });
  if (staff) {
    api.course(session.course_id).then(({ course }) => {
      if (!course.join_code) return;
      const link = `${location.origin}/#/join/${encodeURIComponent(course.join_code)}`;
      invite.append('Invite students: ', h('a', { id: 'session-join-link', href: link, text: link }),
        course.guests_allowed ? ' (guests may join by name)' : '');
    }).catch(() => { /* the course page has the link too */ });
  }

  // The console: on a laptop the lesson (slides, polls, groups) on the left and
  // the room on the right (raised hands and who is here at its top, in sight,
  // then the questions, which scroll); on a phone one column, the lesson first.
  root.replaceChildren(
    h('p', { class: 'back' }, h('a', { href: `#/course/${encodeURIComponent(session.course_id)}`, text: '← Back to the course' })),
    h('section', { 'aria-labelledby': 'session-title', class: 'card session-head' },
      h('div', { class: 'session-what' },
        h('h2', { id: 'session-title', text: session.title }),
        h('p', { class: 'session-meta' }, 'State: ', stateEl, ' · Your role: ', h('span', { id: 'session-role', text: ROLE_LABEL[role] || role }), ' · ', live)),
      controls, invite),
    h('div', { class: 'console' },
      h('div', { class: 'lesson' }, panels[0].section, panels[1].section, panels[2].section),
      h('div', { class: 'room' },
        h('section', { 'aria-labelledby': 'hands-title', class: 'card hands-card' }, h('h2', { id: 'hands-title', text: 'Raised hands' }), handsList),
        h('section', { 'aria-labelledby': 'online-title', class: 'card online-card' }, h('h2', { id: 'online-title', text: 'Who is here' }), hereCount, staff ? onlineList : null),
        h('section', { 'aria-labelledby': 'questions-title', class: 'card questions-card' }, h('h2', { id: 'questions-title', text: 'Questions' }), qaBox, questionsList))),
  );
  render();

  const tokenOf = async () => (await sessionsApi.token(sid)).token;
  const t = await sessionsApi.token(sid);
  herald = new Herald({ app: t.app || 'classroom', token: t.token, getToken: tokenOf, shareTabs: false });
  const sub = herald.subscribe(t.channel || `class:${sid}`, {
    cursor: first.cursor,
    onMessage: apply,
    onReset: reloadSnapshot, // history no longer reaches back: load the snapshot again
    onError: (err) => say(err.message, 'error'),
  });
  // The caller's own channel: private answers.
  const privateChannel = t.private_channel || first.private_channel;
  const privateSub = privateChannel ? herald.subscribe(privateChannel, {
    cursor: first.private_cursor || t.private_cursor,
    onMessage: apply,
    onReset: reloadSnapshot,
  }) : null;
  // Staff only: what the audience must not see yet (hidden poll tallies).
  const staffChannel = staff ? (first.staff_channel || t.staff_channel) : null;
  const staffSub = staffChannel ? herald.subscribe(staffChannel, {
    cursor: first.staff_cursor || t.staff_cursor,
    onMessage: apply,
    onReset: reloadSnapshot,
  }) : null;
  const off = herald.on('state', ({ state }) => {
    live.textContent = state === 'connected' ? 'Live updates on.' : `Connection: ${state}`;
  });
  renderOnline();

  // Report this screen's activity: away while the page is hidden, idle after a
  // while without input, active otherwise; sent when it changes (and again
  // after a reconnect, since the server keeps it for the connections of now).
  let reported = 'active';
  let lastInput = Date.now();
  const activityNow = () => (document.visibilityState === 'hidden' ? 'away' : Date.now() - lastInput > IDLE_AFTER_MS ? 'idle' : 'active');
  const report = async (force = false) => {
    const a = activityNow();
    if ((a === reported && !force) || snap.state === 'ended') return;
    reported = a;
    try { await sessionsApi.activity(sid, a); } catch { /* best effort: the next change reports again */ }
  };
  const onInput = () => { lastInput = Date.now(); if (reported === 'idle') report(); };
  const onVisibility = () => { lastInput = Date.now(); report(); };
  const inputs = ['keydown', 'pointerdown', 'pointermove', 'touchstart', 'scroll'];
  for (const e of inputs) window.addEventListener(e, onInput, { passive: true });
  document.addEventListener('visibilitychange', onVisibility);
  const idleTimer = setInterval(() => report(), 15000);
  const offConnected = herald.on('state', ({ state }) => { if (state === 'connected' && reported !== 'active') report(true); });
  const stopActivity = () => {
    clearInterval(idleTimer);
    offConnected();
    for (const e of inputs) window.removeEventListener(e, onInput);
    document.removeEventListener('visibilitychange', onVisibility);
  };
  current = { close: () => { stopActivity(); off(); sub.unsubscribe(); privateSub?.unsubscribe(); staffSub?.unsubscribe(); herald.close(); } };
}
