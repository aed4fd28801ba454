// A live session's page, for the trainer and for students: the session's state,
// who is here (Herald presence), and the raised hands. It follows the snapshot +
// cursor recipe (docs/classroom.md): load the snapshot with its cursor, render it,
// subscribe to the session's channel from that cursor, and replace the part of
// the state each event carries. A reload or a late join lands on the same state.

import { Herald } from '/sdk/herald.js';
import { api, call } from './api.js';

const STATE_LABEL = { scheduled: 'Not started', live: 'Live', paused: 'Paused', ended: 'Ended' };
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
};

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
  const online = new Map(); // user id -> {name, role}

  const stateEl = h('strong', { id: 'session-state' });
  const handsList = h('ol', { 'aria-label': 'Raised hands', class: 'hands' });
  const onlineList = h('ul', { 'aria-label': 'Who is here', class: 'online' });
  const controls = h('div', { class: 'controls' });
  const live = h('p', { id: 'connection', class: 'muted', text: 'Connecting…' });

  function act(label, fn) {
    return h('button', {
      type: 'button',
      onclick: async (e) => {
        e.target.disabled = true;
        try { await fn(); } catch (err) { say(err.message, 'error'); } finally { e.target.disabled = false; }
      },
    }, label);
  }

  function renderState() {
    stateEl.textContent = STATE_LABEL[snap.state] || snap.state;
    controls.replaceChildren();
    if (staff) {
      if (snap.state === 'scheduled') controls.append(act('Start the session', () => sessionsApi.act(sid, 'start')));
      if (snap.state === 'live') controls.append(act('Pause', () => sessionsApi.act(sid, 'pause')));
      if (snap.state === 'paused') controls.append(act('Resume', () => sessionsApi.act(sid, 'resume')));
      if (snap.state !== 'ended') controls.append(' ', act('End the session', () => sessionsApi.act(sid, 'end')));
    } else if (snap.state === 'live') {
      const mine = (snap.hands || []).some((x) => x.user_id === me().id);
      controls.append(mine
        ? act('Lower my hand', () => sessionsApi.lower(sid))
        : act('Raise my hand', () => sessionsApi.raise(sid)));
    }
  }

  function renderHands() {
    const hands = snap.hands || [];
    handsList.replaceChildren(...(hands.length === 0
      ? [h('li', { class: 'empty', text: 'No hand raised.' })]
      : hands.map((x) => h('li', {}, x.name,
        staff ? [' ', act(`Lower ${x.name}'s hand`, () => sessionsApi.lowerOf(sid, x.user_id))] : []))));
    if (staff && hands.length > 1) handsList.append(h('li', { class: 'all' }, act('Lower all hands', () => sessionsApi.lowerAll(sid))));
  }

  function renderOnline() {
    const people = [...online.values()].sort((a, b) => a.name.localeCompare(b.name));
    onlineList.replaceChildren(...people.map((p) => h('li', {}, p.name, ' ', h('span', { class: 'role', text: ROLE_LABEL[p.role] || p.role || '' }))));
  }

  function render() {
    renderState();
    renderHands();
  }

  /// Applies one event of the session channel: each carries the new value of what changed.
  function apply(m) {
    const d = m.data || {};
    if (m.event === 'session.state') {
      snap = { ...snap, ...(typeof d === 'string' ? { state: d } : d) };
    } else if (m.event === 'hands') {
      snap = { ...snap, hands: Array.isArray(d) ? d : d.hands || [] };
    } else if (m.event === 'roster.role' && d.roles) {
      // The roles changed during the session: {user_id: role}.
      snap = { ...snap, roles: { ...(snap.roles || {}), ...d.roles } };
      for (const [uid, r] of Object.entries(d.roles)) {
        const p = online.get(uid);
        if (p) p.role = r;
      }
      renderOnline();
      if (me() && d.roles[me().id] && d.roles[me().id] !== role) { ui.reload(); return; }
    }
    render();
  }

  async function refreshPresence() {
    try {
      const members = await herald.presence(`class:${sid}`);
      online.clear();
      for (const m of members) online.set(m.user, { name: (m.info && m.info.name) || m.user, role: m.info && m.info.role });
      renderOnline();
    } catch { /* presence needs the WebSocket; the list fills from join events */ }
  }

  root.replaceChildren(
    h('p', {}, h('a', { href: `#/course/${encodeURIComponent(session.course_id)}`, text: '← Back to the course' })),
    h('section', { 'aria-labelledby': 'session-title', class: 'card' },
      h('h2', { id: 'session-title', text: session.title }),
      h('p', {}, 'State: ', stateEl, ' · Your role: ', h('span', { id: 'session-role', text: ROLE_LABEL[role] || role })),
      controls, live),
    h('section', { 'aria-labelledby': 'hands-title', class: 'card' }, h('h2', { id: 'hands-title', text: 'Raised hands' }), handsList),
    h('section', { 'aria-labelledby': 'online-title', class: 'card' }, h('h2', { id: 'online-title', text: 'Who is here' }), onlineList),
  );
  render();

  const tokenOf = async () => (await sessionsApi.token(sid)).token;
  const t = await sessionsApi.token(sid);
  herald = new Herald({ app: t.app || 'classroom', token: t.token, getToken: tokenOf, shareTabs: false });
  const sub = herald.subscribe(t.channel || `class:${sid}`, {
    cursor: first.cursor,
    onMessage: apply,
    onReset: async () => {
      // History no longer reaches back: load the snapshot again.
      const again = await sessionsApi.get(sid);
      snap = again.snapshot;
      render();
    },
    onPresence: (p) => {
      if (p.action === 'join') online.set(p.user, { name: (p.info && p.info.name) || p.user, role: p.info && p.info.role });
      else online.delete(p.user);
      renderOnline();
    },
    onError: (err) => say(err.message, 'error'),
  });
  const off = herald.on('state', ({ state }) => {
    live.textContent = state === 'connected' ? 'Live updates on.' : `Connection: ${state}`;
  });
  if (me()) online.set(me().id, { name: me().name, role });
  renderOnline();
  setTimeout(refreshPresence, 300);
  current = { close: () => { off(); sub.unsubscribe(); herald.close(); } };
}
