// A live session's breakout groups. A panel of the session page (session.js):
// `section` is its card; `render(snap)` draws it from the snapshot; `apply(m, snap)`
// takes one event of the session's channels and answers the part of the snapshot it
// replaces (an object merged into it), or null when the event is not one of its own.
//
// The whole groups state arrives in every `groups` event and in the snapshot's
// `groups` field ({mode, groups:[{id, name, members:[{user_id, name}]}], ends_at,
// broadcasts}), so the panel only ever replaces it. Staff split, move, rename, time
// and broadcast; students see their group, the countdown and the broadcasts, and pick
// a group themselves in pick mode.

import { bdi, keepFocus, keyed, still } from './dom.js';

const enc = encodeURIComponent;
const NO_GROUPS = { mode: 'assigned', groups: [], ends_at: null, broadcasts: [] };

/// "04:32", or "1:04:32" past an hour.
export function clock(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const two = (n) => String(n).padStart(2, '0');
  const hours = Math.floor(s / 3600);
  const rest = `${two(Math.floor((s % 3600) / 60))}:${two(s % 60)}`;
  return hours ? `${hours}:${rest}` : rest;
}

export function groupsPanel(ctx) {
  const { h, act, call, say, sid, staff, me, courseId } = ctx;
  const base = `sessions/${enc(sid)}/groups`;
  const groupsApi = {
    split: (body) => call('POST', `${base}/split`, body),
    setUp: (body) => call('PUT', base, body),
    mode: (mode) => call('PATCH', base, { mode }),
    end: () => call('DELETE', base),
    rename: (gid, name) => call('PATCH', `${base}/${enc(gid)}`, { name }),
    move: (gid, user) => call('POST', `${base}/${enc(gid)}/members`, { user_id: user }),
    remove: (gid, user) => call('DELETE', `${base}/${enc(gid)}/members/${enc(user)}`),
    join: (gid) => call('POST', `${base}/${enc(gid)}/join`, {}),
    leave: () => call('POST', `${base}/leave`, {}),
    extend: (s) => call('POST', `${base}/timer`, { extend_s: s }),
    broadcast: (text) => call('POST', `${base}/broadcast`, { text }),
  };

  const intro = h('p', { class: 'muted groups-intro' });
  const timer = h('p', { class: 'groups-timer', id: 'groups-timer', role: 'timer', hidden: true });
  const notices = h('div', { class: 'groups-broadcasts', role: 'status', 'aria-live': 'polite', 'aria-label': 'Messages to all groups' });
  const mine = h('div', { class: 'my-group' });
  const board = h('div', { class: 'groups-board' });
  const unplaced = h('div', { class: 'groups-unplaced' });
  const body = h('div', { class: 'groups' });
  const section = h('section', { 'aria-labelledby': 'groups-title', class: 'card groups-card' },
    h('h2', { id: 'groups-title', text: 'Groups' }), body);

  let groups = NO_GROUPS;
  let state = 'scheduled';
  let wasActive = false;
  let lastKey = null;
  let ticking = null;
  let roster = null; // staff: the course's students, for "Not in a group"
  let rosterAsked = false;
  const seen = new Set(); // broadcast ids already shown

  // --- staff controls, built once so that typing survives live updates ---
  const countInput = h('input', { id: 'groups-count', type: 'number', min: 1, max: 50, value: 2, inputmode: 'numeric' });
  const onlineInput = h('input', { id: 'groups-online', type: 'checkbox' });
  const minutesInput = h('input', { id: 'groups-minutes', type: 'number', min: 1, max: 240, placeholder: 'No timer', inputmode: 'numeric' });
  const splitButton = act('Split into 2 groups', () => {
    const count = Number(countInput.value);
    return groupsApi.split({ count, online_only: onlineInput.checked, ...timerOf() });
  });
  const pickButton = act('Open 2 groups to pick', () => {
    const count = Math.max(1, Math.min(50, Number(countInput.value) || 0));
    const list = Array.from({ length: count }, (_, i) => ({ name: `Group ${i + 1}` }));
    return groupsApi.setUp({ groups: list, mode: 'pick', ...timerOf() });
  });
  const labelButtons = () => {
    const n = Number(countInput.value) || 0;
    splitButton.textContent = `Split into ${n} group${n === 1 ? '' : 's'}`;
    pickButton.textContent = `Open ${n} group${n === 1 ? '' : 's'} to pick`;
  };
  countInput.addEventListener('input', labelButtons);
  function timerOf() {
    const m = Number(minutesInput.value);
    return minutesInput.value && m > 0 ? { duration_s: Math.round(m * 60) } : {};
  }
  const setup = h('div', { class: 'groups-setup' },
    h('div', { class: 'groups-fields' },
      h('p', {}, h('label', { for: 'groups-count', text: 'Number of groups' }), countInput),
      h('p', {}, h('label', { for: 'groups-minutes', text: 'Timer, minutes (optional)' }), minutesInput)),
    h('label', { for: 'groups-online' }, onlineInput, ' Split only the students who are here now'),
    h('div', { class: 'controls' }, splitButton, pickButton),
    h('p', { class: 'muted', text: 'Splitting deals the students at random into groups of even size; students pick a group themselves in groups opened to pick. Either replaces running breakouts.' }));

  const pickToggle = h('input', {
    id: 'groups-pick', type: 'checkbox',
    onchange: async (e) => {
      try { await groupsApi.mode(e.target.checked ? 'pick' : 'assigned'); } catch (err) { e.target.checked = !e.target.checked; say(err.message, 'error'); }
    },
  });
  const message = h('textarea', { id: 'groups-message', rows: 2, maxlength: 500 });
  const broadcastForm = h('form', { class: 'groups-broadcast', 'aria-label': 'Broadcast' },
    h('label', { for: 'groups-message', text: 'Message to all groups' }), message,
    h('div', { class: 'controls' }, h('button', { type: 'submit', text: 'Send to all groups' })));
  broadcastForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const button = broadcastForm.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      await groupsApi.broadcast(message.value);
      message.value = '';
    } catch (err) { say(err.message, 'error'); } finally { button.disabled = false; }
  });
  const setupSummary = h('summary', { text: 'Set up breakouts' });
  // Closed until asked for, like the other "new" forms; closed again once used.
  const setupBox = h('details', { class: 'groups-new' }, setupSummary, setup);
  const tools = h('div', { class: 'groups-tools' },
    h('label', { for: 'groups-pick' }, pickToggle, ' Students pick their own group'),
    h('div', { class: 'controls groups-time' },
      act('+1 minute', () => groupsApi.extend(60)),
      act('+5 minutes', () => groupsApi.extend(300)),
      h('span', { class: 'spacer' }),
      act('End breakouts', () => groupsApi.end())),
    broadcastForm);

  // --- the countdown ---
  function tick() {
    if (!groups.ends_at || groups.groups.length === 0 || state === 'ended') {
      timer.hidden = groups.groups.length === 0 || state === 'ended';
      timer.textContent = 'No timer.';
      timer.classList.remove('up');
      return;
    }
    timer.hidden = false;
    const left = groups.ends_at - Date.now();
    timer.textContent = left > 0 ? `Ends in ${clock(left)}` : 'Time is up.';
    timer.classList.toggle('up', left <= 0);
  }
  function keepTicking() {
    if (ticking) return;
    ticking = setInterval(() => {
      if (!section.isConnected && ticking) { clearInterval(ticking); ticking = null; return; }
      tick();
    }, 1000);
  }

  // --- drawing ---
  const myId = () => (me() ? me().id : null);
  const groupOf = (uid) => groups.groups.find((g) => g.members.some((m) => m.user_id === uid));
  /// The other members of `g`, each name isolated, separated by commas.
  const others = (g) => {
    const names = g.members.filter((m) => m.user_id !== myId()).map((m) => bdi(m.name));
    return names.length === 0 ? ['nobody else yet'] : names.flatMap((n, i) => (i === 0 ? [n] : [', ', n]));
  };

  function moveSelect(person, current) {
    const select = h('select', { id: `groups-move-${person.user_id}`, 'aria-label': `Move ${person.name} to` },
      current ? null : h('option', { value: '', text: 'Choose a group…', selected: true }),
      groups.groups.map((g) => h('option', { value: g.id, text: g.name, selected: current === g.id })),
      current ? h('option', { value: '', text: 'No group' }) : null);
    select.addEventListener('change', async () => {
      select.disabled = true;
      try {
        if (select.value) await groupsApi.move(select.value, person.user_id);
        else if (current) await groupsApi.remove(current, person.user_id);
      } catch (err) { say(err.message, 'error'); select.value = current || ''; } finally { select.disabled = false; }
    });
    return select;
  }

  /// One group's card: drawn once, updated when the group changes. A rename
  /// being typed stays open across updates until saved or cancelled.
  function groupView(first) {
    const headSlot = h('div');
    const badge = h('p', { class: 'badge', text: 'Your group', hidden: true });
    const membersSlot = h('div');
    const pickSlot = h('div');
    const el = h('section', { class: 'group', 'data-group': first.id }, headSlot, badge, membersSlot, pickSlot);
    let g = first;
    let renaming = null;
    let drawn = null;

    function heading(live) {
      const title = h('h3', { class: 'group-name' }, g.name);
      if (!staff || !live) return title;
      return h('div', { class: 'group-head' }, title, h('button', {
        type: 'button', class: 'link', 'aria-label': `Rename ${g.name}`, onclick: startRename,
      }, 'Rename'));
    }
    function stopRename() {
      renaming = null;
      drawn = null;
      headSlot.replaceChildren(heading(state !== 'ended'));
      headSlot.querySelector('button')?.focus();
    }
    function startRename() {
      const input = h('input', { 'aria-label': `New name for ${g.name}`, maxlength: 60 });
      input.value = g.name;
      renaming = h('form', { class: 'group-rename' }, input, ' ', h('button', { type: 'submit', text: 'Save name' }),
        h('button', { type: 'button', class: 'link', text: 'Cancel', onclick: stopRename }));
      renaming.addEventListener('submit', async (e) => {
        e.preventDefault();
        try { await groupsApi.rename(g.id, input.value); stopRename(); } catch (err) { say(err.message, 'error'); }
      });
      input.addEventListener('keydown', (e) => { if (e.key === 'Escape') stopRename(); });
      headSlot.replaceChildren(renaming);
      input.focus();
      input.select();
    }

    return {
      el,
      update(next) {
        g = next;
        const live = state !== 'ended';
        const own = !staff && g.members.some((m) => m.user_id === myId());
        const picking = !staff && state === 'live' && groups.mode === 'pick' && ctx.role === 'student';
        const key = JSON.stringify([g, live, own, picking, staff && live ? groups.groups.map((x) => [x.id, x.name]) : null]);
        if (key === drawn) return;
        drawn = key;
        el.className = `group${own ? ' mine' : ''}`;
        el.setAttribute('aria-label', g.name);
        if (!(staff && live)) renaming = null;
        if (!renaming) headSlot.replaceChildren(heading(live));
        badge.hidden = !own;
        membersSlot.replaceChildren(h('ul', { class: 'members', 'aria-label': `Members of ${g.name}` },
          g.members.length === 0
            ? h('li', { class: 'empty', text: 'Nobody yet.' })
            : g.members.map((m) => h('li', {},
              h('span', { class: 'member-name', text: m.name }),
              staff && live ? moveSelect(m, g.id) : null))));
        pickSlot.replaceChildren(picking ? h('div', { class: 'controls' }, own
          ? act(`Leave ${g.name}`, () => groupsApi.leave())
          : act(`Join ${g.name}`, () => groupsApi.join(g.id))) : '');
      },
    };
  }

  function renderNotices() {
    const list = [...groups.broadcasts].reverse();
    keyed(notices, list, (b) => b.id, (b) => {
      const fresh = !seen.has(b.id) && lastKey !== null;
      seen.add(b.id);
      const at = new Date(b.at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
      return still(h('p', { class: `broadcast${fresh ? ' fresh' : ''}` },
        h('strong', {}, bdi(b.by), ': '), bdi(b.text), ' ', h('span', { class: 'muted', text: at })));
    });
  }

  function renderMine() {
    mine.replaceChildren();
    if (staff || ctx.role !== 'student' || groups.groups.length === 0) return;
    const g = groupOf(myId());
    if (g) {
      mine.append(h('p', { id: 'my-group', class: 'my-group-name' }, 'Your group: ', h('strong', { text: g.name })),
        h('p', { class: 'muted' }, 'With ', ...others(g), '.'));
    } else {
      mine.append(h('p', { id: 'my-group', class: 'my-group-name', text: groups.mode === 'pick' ? 'You are not in a group yet: pick one below.' : 'You are not in a group yet.' }));
    }
  }

  let unplacedKey = null;
  function renderUnplaced(live) {
    const placed = new Set(groups.groups.flatMap((g) => g.members.map((m) => m.user_id)));
    const left = !staff || !live || !roster || groups.groups.length === 0 ? [] : roster.filter((m) => !placed.has(m.user_id));
    const key = JSON.stringify([left, groups.groups.map((g) => [g.id, g.name])]);
    if (key === unplacedKey) return;
    unplacedKey = key;
    unplaced.replaceChildren();
    if (left.length === 0) return;
    unplaced.append(h('h3', { text: 'Not in a group' }),
      h('ul', { class: 'members', 'aria-label': 'Students not in a group' },
        left.map((m) => h('li', {}, h('span', { class: 'member-name', text: m.name }), moveSelect(m, null)))));
  }

  async function loadRoster() {
    if (rosterAsked) return;
    rosterAsked = true;
    try {
      const r = await call('GET', `courses/${enc(courseId)}/roster`);
      roster = (r.members || []).filter((m) => m.role === 'student');
      renderUnplaced(state !== 'ended');
    } catch (err) { say(err.message, 'error'); } finally { rosterAsked = false; }
  }

  function render(snap) {
    groups = { ...NO_GROUPS, ...(snap.groups || {}) };
    state = snap.state;
    const key = JSON.stringify([state, groups]);
    if (key === lastKey) return;
    const back = keepFocus();
    const live = state !== 'ended';
    const active = groups.groups.length > 0;
    renderNotices();
    lastKey = key;

    if (!live) intro.textContent = active ? 'The session has ended; these were its groups.' : 'No breakout groups.';
    else if (!active) intro.textContent = 'No breakout groups right now.';
    else intro.textContent = groups.mode === 'pick' ? 'Breakouts are on: students pick their group.' : 'Breakouts are on.';
    renderMine();
    keyed(board, groups.groups, (g) => g.id, groupView);
    board.hidden = !active;
    pickToggle.checked = groups.mode === 'pick';
    tick();
    if (active && groups.ends_at) keepTicking();

    const parts = [intro, mine, timer, notices];
    if (staff && live) {
      if (active) parts.push(tools);
      parts.push(board, unplaced);
      if (active && !wasActive) setupBox.open = false;
      setupSummary.textContent = active ? 'Split again or start over' : 'Set up breakouts';
      parts.push(setupBox);
      if (active) loadRoster();
    } else {
      parts.push(board);
    }
    // The same parts as drawn: nothing moves (a move would take the focus).
    if (parts.length !== body.children.length || parts.some((p, i) => body.children[i] !== p)) body.replaceChildren(...parts);
    wasActive = active;
    renderUnplaced(live);
    back();
  }

  return {
    section,
    render,
    /// Someone came online: a student the roster lacks (joined the course during the
    /// breakouts) is listed under "Not in a group" at once, so the trainer can place them.
    joined(user, info) {
      if (staff && roster && state !== 'ended' && groups.groups.length > 0
        && info && info.role === 'student' && !roster.some((m) => m.user_id === user)) loadRoster();
    },
    apply(m) {
      if (m.event !== 'groups') return null;
      return { groups: (m.data && m.data.groups) || NO_GROUPS };
    },
  };
}
