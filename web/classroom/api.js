// The classroom's HTTP API, as the pages use it: JSON in and out, the session
// cookie sent by the browser, the CSRF token (cookie `herald_csrf`) echoed in the
// `x-csrf-token` header of every state-changing request. Errors are thrown as
// ApiError with the server's code and message.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function cookie(name) {
  for (const part of document.cookie.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return '';
}

export async function call(method, path, body) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET') headers['x-csrf-token'] = cookie('herald_csrf');
  // Changes answer without the whole snapshot: the page follows the session's events
  // (docs/classroom.md, "Prefer: return=minimal").
  if (method !== 'GET') headers.prefer = 'return=minimal';
  let res;
  try {
    res = await fetch(`/classroom/api/${path}`, {
      method,
      headers,
      credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'network', 'The server cannot be reached. Check your connection and try again.');
  }
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!res.ok) {
    const e = json && json.error;
    throw new ApiError(res.status, e ? e.code : 'http_' + res.status, e ? e.message : `The server answered ${res.status}.`);
  }
  return json;
}

export const api = {
  me: () => call('GET', 'auth/me'),
  signUp: (email, name, password) => call('POST', 'auth/signup', { email, name, password }),
  signIn: (email, password) => call('POST', 'auth/signin', { email, password }),
  guest: (code, name) => call('POST', 'auth/guest', { code, name }),
  signOut: () => call('POST', 'auth/signout', {}),
  courses: () => call('GET', 'courses'),
  demo: () => call('POST', 'demo', {}),
  createCourse: (title) => call('POST', 'courses', { title }),
  course: (id) => call('GET', `courses/${encodeURIComponent(id)}`),
  updateCourse: (id, patch) => call('PATCH', `courses/${encodeURIComponent(id)}`, patch),
  join: (code) => call('POST', 'courses/join', { code }),
  roster: (id) => call('GET', `courses/${encodeURIComponent(id)}/roster`),
  setRole: (id, user, role) => call('POST', `courses/${encodeURIComponent(id)}/roster/${encodeURIComponent(user)}`, { role }),
  newCode: (id) => call('POST', `courses/${encodeURIComponent(id)}/code`, {}),
};
