// The classroom's pages: sign in or up, my courses, a course (roster, roles, join
// code), joining by code or link (`/#/join/CODE`). Plain DOM, no build step; every
// control has a label. Views are chosen by the URL hash so that reload and the
// back button work.

import { api, ApiError } from './api.js';
import { leaveSession, sessionsApi, sessionView } from './session.js';

const app = document.getElementById('app');
const status = document.getElementById('status');
const who = document.getElementById('who');

const ROLES = { trainer: 'Trainer', co_trainer: 'Co-trainer', student: 'Student', observer: 'Observer' };
const STAFF = new Set(['trainer', 'co_trainer']);

let me = null;

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/// Shows `parts` as the page (null parts are left out).
function show(...parts) {
  app.replaceChildren(...parts.filter((p) => p !== null && p !== undefined && p !== false));
}

/// The status line says what just happened, and stays only while it is true:
/// until the page after the one it was said for (a join is reported on the
/// course page it leads to, not on every page after), or, given `stale` (a
/// test of the live session's state), until the state says otherwise ("The
/// poll is open." goes when the poll closes).
let routes = 0;
let saidAt = 0;
let stale = null;

function say(message, kind = 'info', until = null) {
  status.textContent = message;
  status.dataset.kind = kind;
  saidAt = routes;
  stale = until;
}

/// Clears the status line once the session's state `snap` makes it untrue.
function settle(snap) {
  if (stale && stale(snap)) say('');
}

function field(id, label, attrs = {}) {
  return h('p', {}, h('label', { for: id, text: label }), h('input', { id, name: id, ...attrs }));
}

/// Runs an action from a form: shows its error (the server's message) instead of failing silently.
function form(id, label, fields, action) {
  const f = h('form', { id, 'aria-label': label }, fields, h('button', { type: 'submit', text: label }));
  f.addEventListener('submit', async (e) => {
    e.preventDefault();
    const button = f.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      await action(new FormData(f));
    } catch (err) {
      say(err instanceof ApiError ? err.message : String(err), 'error');
    } finally {
      button.disabled = false;
    }
  });
  return f;
}

function showWho() {
  who.replaceChildren();
  if (!me) return;
  who.append(
    h('span', { text: `Signed in as ${me.name}${me.guest ? ' (guest)' : ''}` }),
    ' ',
    h('button', {
      type: 'button',
      class: 'link',
      onclick: async () => {
        try { await api.signOut(); } catch { /* the session is gone either way */ }
        me = null;
        showWho();
        location.hash = '#/';
        route();
      },
    }, 'Sign out'),
  );
}

function signInView() {
  const next = location.hash.startsWith('#/join/') ? location.hash : '#/';
  const joinCode = next.startsWith('#/join/') ? decodeURIComponent(next.slice('#/join/'.length)) : null;
  show(
    // A join link: join as a guest by name, where the trainer lets guests in.
    joinCode ? h('section', { 'aria-labelledby': 'guest-title', class: 'card' },
      h('h2', { id: 'guest-title', text: 'Join as a guest' }),
      h('p', { class: 'muted', text: 'No account needed if the trainer lets guests in: type the name others will see.' }),
      form('guest', 'Join as guest', [
        field('guest-name', 'Name shown to others', { autocomplete: 'name', required: true, maxlength: 80 }),
      ], async (d) => {
        const r = await api.guest(joinCode, d.get('guest-name'));
        me = r.user;
        showWho();
        say(`Welcome, ${r.user.name}. You joined "${r.course.title}" as a guest.`);
        location.hash = `#/course/${encodeURIComponent(r.course.id)}`;
      })) : null,
    h('section', { 'aria-labelledby': 'signin-title', class: 'card' },
      h('h2', { id: 'signin-title', text: 'Sign in' }),
      form('signin', 'Sign in', [
        field('signin-email', 'Email', { type: 'email', autocomplete: 'email', required: true }),
        field('signin-password', 'Password', { type: 'password', autocomplete: 'current-password', required: true }),
      ], async (d) => {
        const r = await api.signIn(d.get('signin-email'), d.get('signin-password'));
        signedIn(r.user, next);
      })),
    h('section', { 'aria-labelledby': 'signup-title', class: 'card' },
      h('h2', { id: 'signup-title', text: 'New here? Create an account' }),
      form('signup', 'Create account', [
        field('signup-name', 'Your name', { autocomplete: 'name', required: true, maxlength: 80 }),
        field('signup-email', 'Email address', { type: 'email', autocomplete: 'email', required: true }),
        field('signup-password', 'Choose a password', { type: 'password', autocomplete: 'new-password', required: true, minlength: 8 }),
      ], async (d) => {
        const r = await api.signUp(d.get('signup-email'), d.get('signup-name'), d.get('signup-password'));
        signedIn(r.user, next);
      })),
  );
}

function signedIn(user, next) {
  me = user;
  showWho();
  say(`Welcome, ${user.name}.`);
  if (location.hash === next) route();
  else location.hash = next;
}

async function coursesView() {
  const { courses } = await api.courses();
  const list = h('ul', { 'aria-label': 'My courses', class: 'courses' },
    courses.length === 0 ? h('li', { class: 'empty', text: 'No course yet: create one, or join one with a code.' }) : null,
    courses.map((c) => h('li', {},
      h('a', { href: `#/course/${encodeURIComponent(c.id)}`, text: c.title }),
      ' ',
      h('span', { class: 'role', text: ROLES[c.role] || c.role }))));
  // A first visit: offer a ready demo course, so a new user sees a live lesson in a minute.
  const demo = h('section', { 'aria-labelledby': 'demo-title', class: 'card demo' },
    h('h2', { id: 'demo-title', text: courses.length === 0 ? 'New here? Try a demo lesson' : 'Try a demo lesson' }),
    h('p', { text: 'A course with slides, a poll and a quiz, live at once. Open its join link in another browser (or a private window) to be your own student.' }),
    h('button', {
      type: 'button',
      onclick: async (e) => {
        e.target.disabled = true;
        try {
          const r = await api.demo();
          say(`Demo ready: you are the trainer of "${r.course.title}". Open the invite link at the top of the session in another browser (or a private window) to join as a student.`);
          location.hash = `#/session/${encodeURIComponent(r.session.id)}`;
        } catch (err) { say(err.message, 'error'); } finally { e.target.disabled = false; }
      },
    }, 'Start a demo lesson'));
  show(
    courses.length === 0 ? demo : null,
    h('section', { 'aria-labelledby': 'courses-title', class: 'card' },
      h('h2', { id: 'courses-title', text: 'My courses' }), list),
    h('section', { 'aria-labelledby': 'create-title', class: 'card' },
      h('h2', { id: 'create-title', text: 'Create a course' }),
      form('create', 'Create course', [field('course-title', 'Course title', { required: true, maxlength: 200 })], async (d) => {
        const { course } = await api.createCourse(d.get('course-title'));
        say(`Course "${course.title}" created. Share its join code with your students.`);
        location.hash = `#/course/${encodeURIComponent(course.id)}`;
      })),
    h('section', { 'aria-labelledby': 'join-title', class: 'card' },
      h('h2', { id: 'join-title', text: 'Join a course' }),
      form('join', 'Join course', [field('join-code', 'Join code', { required: true, autocomplete: 'off' })], async (d) => {
        await joinWith(d.get('join-code'));
      })),
    courses.length === 0 ? null : demo,
  );
}

async function joinWith(code) {
  const { course } = await api.join(String(code).trim());
  say(`You joined "${course.title}".`);
  location.hash = `#/course/${encodeURIComponent(course.id)}`;
}

async function courseView(id) {
  const { course } = await api.course(id);
  const staff = STAFF.has(course.role);
  const trainer = course.role === 'trainer';
  const { members } = await api.roster(id);
  const joinLink = course.join_code ? `${location.origin}/#/join/${encodeURIComponent(course.join_code)}` : null;
  const roster = h('table', { 'aria-label': 'Roster' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Name' }), h('th', { scope: 'col', text: 'Role' }))),
    h('tbody', {}, members.map((m) => h('tr', {},
      h('td', { text: m.name + (me && m.user_id === me.id ? ' (you)' : '') }),
      h('td', {}, trainer && !(me && m.user_id === me.id)
        ? roleSelect(id, m)
        : h('span', { class: 'role', text: ROLES[m.role] || m.role }))))));
  app.replaceChildren(
    h('p', {}, h('a', { href: '#/', text: '← My courses' })),
    h('section', { 'aria-labelledby': 'course-title', class: 'card' },
      h('h2', { id: 'course-title', text: course.title }),
      h('p', {}, 'Your role: ', h('strong', { id: 'my-role', text: ROLES[course.role] || course.role })),
      staff && course.join_code ? h('div', { class: 'code' },
        h('p', {}, 'Join code: ', h('code', { id: 'join-code-value', text: course.join_code })),
        h('p', {}, 'Or share this link: ', h('a', { id: 'join-link', href: joinLink, text: joinLink })),
        trainer ? h('button', {
          type: 'button',
          onclick: async () => {
            try {
              await api.newCode(id);
              say('A new join code was issued; the old one no longer works.');
              await courseView(id);
            } catch (err) { say(err.message, 'error'); }
          },
        }, 'Issue a new join code') : null) : null,
      trainer ? h('p', {}, h('label', { for: 'guests' },
        h('input', {
          id: 'guests',
          type: 'checkbox',
          checked: course.guests_allowed,
          onchange: async (e) => {
            try {
              await api.updateCourse(id, { guests_allowed: e.target.checked });
              say(e.target.checked ? 'Guests may join live sessions by name.' : 'Guests may no longer join.');
            } catch (err) { e.target.checked = !e.target.checked; say(err.message, 'error'); }
          },
        }), ' Let guests join live sessions by name')) : null),
    await sessionsSection(id, staff),
    h('section', { 'aria-labelledby': 'roster-title', class: 'card' },
      h('h2', { id: 'roster-title', text: `Roster (${members.length})` }), roster),
  );
}

const SESSION_STATE = { scheduled: 'not started', live: 'live now', paused: 'paused', ended: 'ended' };

async function sessionsSection(courseId, staff) {
  let sessions = [];
  try {
    ({ sessions } = await sessionsApi.list(courseId));
  } catch (err) {
    say(err.message, 'error');
  }
  return h('section', { 'aria-labelledby': 'sessions-title', class: 'card' },
    h('h2', { id: 'sessions-title', text: 'Live sessions' }),
    h('ul', { 'aria-label': 'Sessions', class: 'courses' },
      sessions.length === 0 ? h('li', { class: 'empty', text: staff ? 'No session yet: create one below.' : 'No session yet.' }) : null,
      sessions.map((x) => h('li', {},
        h('a', { href: `#/session/${encodeURIComponent(x.id)}`, text: x.title }),
        ' ', h('span', { class: 'role', text: SESSION_STATE[x.state] || x.state })))),
    staff ? form('new-session', 'Create session', [field('session-title-input', 'Session title', { required: true, maxlength: 120 })], async (d) => {
      const { session } = await sessionsApi.create(courseId, d.get('session-title-input'));
      location.hash = `#/session/${encodeURIComponent(session.id)}`;
    }) : null);
}

function roleSelect(courseId, m) {
  const sel = h('select', { 'aria-label': `Role of ${m.name}` },
    Object.entries(ROLES).map(([value, label]) => h('option', { value, selected: value === m.role, text: label })));
  sel.addEventListener('change', async () => {
    try {
      await api.setRole(courseId, m.user_id, sel.value);
      say(`${m.name} is now ${ROLES[sel.value].toLowerCase()}.`);
    } catch (err) {
      sel.value = m.role;
      say(err.message, 'error');
    }
  });
  return sel;
}

async function route() {
  const hash = location.hash || '#/';
  leaveSession();
  routes += 1;
  if (saidAt < routes - 1) say('');
  try {
    if (!me) {
      try {
        me = (await api.me()).user;
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 401) throw err;
      }
      showWho();
    }
    if (!me) return signInView();
    const join = hash.match(/^#\/join\/(.+)$/);
    if (join) return await joinWith(decodeURIComponent(join[1]));
    const session = hash.match(/^#\/session\/(.+)$/);
    if (session) return await sessionView(app, decodeURIComponent(session[1]), { h, say, settle, me: () => me, reload: route });
    const course = hash.match(/^#\/course\/(.+)$/);
    if (course) return await courseView(decodeURIComponent(course[1]));
    return await coursesView();
  } catch (err) {
    say(err instanceof ApiError ? err.message : String(err), 'error');
    if (err instanceof ApiError && err.status === 401) {
      me = null;
      showWho();
      signInView();
    }
  }
}

window.addEventListener('hashchange', route);
route();
