// herald.js: the browser client of Herald. An ES module with no dependencies and
// no build step. Documented in docs/sdk.md.
//
//   import { Herald } from '/sdk/herald.js';
//   const h = new Herald({ url: 'https://push.example.com', app: 'acme', getToken });
//   const sub = h.subscribe('chat:lobby', { onMessage: (m) => show(m.data) });
//
// One connection carries every subscription of the page (and, where the browser
// allows, of every tab of the origin: see "Tabs" below). The transport is chosen
// in the order given (WebSocket, then SSE, then long-poll), remembered, and changed
// when one fails to open. After a drop it reconnects with exponential backoff and
// full jitter, and resumes every channel from its last cursor: nothing lost,
// nothing twice; where history no longer reaches back, onReset tells the app to
// reload its state.

const TRANSPORTS = ['websocket', 'sse', 'longpoll'];
// A long-poll URL longer than this is sent as a POST body instead (common
// proxies refuse request lines over 8 KiB; Herald's own limit is 64 KiB).
const LONG_URL = 6000;
const FATAL_HTTP = new Set([400, 403, 404]);

function b64urlEncode(s) {
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function b64urlDecode(s) {
  const b = s.replace(/-/g, '+').replace(/_/g, '/');
  return atob(b + '='.repeat((4 - (b.length % 4)) % 4));
}

/** The cursor part of one channel after `envelope` (see docs/protocol.md, Cursors). */
export function cursorOf(envelope) {
  return b64urlEncode(`${envelope.channel}|${envelope.epoch}|${envelope.offset}`);
}

/** Splits a cursor into its per-channel parts: Map(channel -> part). */
export function splitCursor(cursor) {
  const parts = new Map();
  if (!cursor) return parts;
  for (const part of cursor.split('.')) {
    try {
      const raw = b64urlDecode(part);
      const channel = raw.slice(0, raw.lastIndexOf('|', raw.lastIndexOf('|') - 1));
      if (channel) parts.set(channel, part);
    } catch { /* not ours: ignore */ }
  }
  return parts;
}

function positionOf(part) {
  const raw = b64urlDecode(part);
  const last = raw.lastIndexOf('|');
  const mid = raw.lastIndexOf('|', last - 1);
  return { epoch: raw.slice(mid + 1, last), offset: Number(raw.slice(last + 1)) };
}

function tokenExpiry(token) {
  try {
    const payload = JSON.parse(b64urlDecode(token.split('.')[1]));
    return typeof payload.exp === 'number' ? payload.exp * 1000 : null;
  } catch {
    return null;
  }
}

function tokenSubject(token) {
  try {
    return JSON.parse(b64urlDecode(token.split('.')[1])).sub || '';
  } catch {
    return '';
  }
}

class HeraldError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

async function errorOf(res) {
  try {
    const body = await res.json();
    return new HeraldError(body.error.code, body.error.message, res.status);
  } catch {
    return new HeraldError('http_' + res.status, `HTTP ${res.status}`, res.status);
  }
}

// ---------------------------------------------------------------- transports
//
// A transport connects the channels it is given and calls back into the client:
//   client._deliver(envelope), client._reset(reset), client._presence(event),
//   client._transportOpen(t), client._transportClosed(t, { reason, fatal, auth, opened })
// Each resumes from client._cursorFor(channel) whenever it (re)subscribes.

class WebSocketTransport {
  constructor(client) {
    this.name = 'websocket';
    this.client = client;
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map();
    this.opened = false;
    this.closed = false;
  }

  start() {
    const c = this.client;
    const url = c._url(`/ws?token=${encodeURIComponent(c._token || '')}`).replace(/^http/, 'ws');
    const ws = new WebSocket(url);
    this.ws = ws;
    const openTimer = setTimeout(() => this._fail('open_timeout'), c.opts.openTimeout);
    ws.onopen = () => {
      clearTimeout(openTimer);
      this.opened = true;
      for (const ch of c._channels()) this.subscribe(ch);
      this.pinger = setInterval(() => this._ping(), c.opts.pingInterval);
      c._transportOpen(this);
    };
    ws.onmessage = (e) => this._onFrame(e.data);
    ws.onclose = (e) => {
      clearTimeout(openTimer);
      if (this.closed) return;
      this._stopTimers();
      const code = e.code;
      if (!this.opened) {
        this._diagnose(url);
        return;
      }
      const auth = code === 4001 || code === 4002;
      const fatal = code === 4003 || code === 4004 || code === 4400;
      this._end({ reason: `close ${code}${e.reason ? ': ' + e.reason : ''}`, auth, fatal, code });
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  _fail(reason) {
    if (this.closed) return;
    try { this.ws.close(); } catch { /* already closed */ }
    this._end({ reason });
  }

  /** The upgrade failed and browsers hide why: ask with a plain GET (the server
   * checks credentials before the upgrade, so it answers 401/403/404 the same way). */
  async _diagnose(wsUrl) {
    let info = { reason: 'upgrade_failed' };
    try {
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(), 3000);
      const res = await fetch(wsUrl.replace(/^ws/, 'http'), { signal: ctl.signal });
      clearTimeout(timer);
      if (res.status === 401 || res.status === 429 || FATAL_HTTP.has(res.status)) {
        const err = await errorOf(res);
        // 400 here means "not a WebSocket request": the app and token are fine, so
        // a proxy refused the upgrade; try the next transport.
        if (res.status !== 400) info = { reason: err.code, auth: res.status === 401, fatal: FATAL_HTTP.has(res.status), error: err };
      }
    } catch { /* network: keep upgrade_failed */ }
    this._end(info);
  }

  _end(info) {
    if (this.closed) return;
    this.closed = true;
    this._stopTimers();
    for (const { reject } of this.pending.values()) reject(new HeraldError('disconnected', 'the connection closed'));
    this.pending.clear();
    this.client._transportClosed(this, { ...info, opened: this.opened });
  }

  _stopTimers() {
    clearInterval(this.pinger);
    clearTimeout(this.pongTimer);
  }

  _ping() {
    if (this.pongTimer) return;
    this.pongTimer = setTimeout(() => this._fail('silent'), this.client.opts.pongTimeout);
    this.request({ op: 'ping' }).then(() => {
      clearTimeout(this.pongTimer);
      this.pongTimer = null;
    }, () => {});
  }

  request(frame) {
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject(new HeraldError('disconnected', 'not connected'));
        return;
      }
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ ...frame, id }));
    });
  }

  _onFrame(text) {
    let f;
    try { f = JSON.parse(text); } catch { return; }
    if (f.id !== undefined && this.pending.has(f.id)) {
      const { resolve, reject } = this.pending.get(f.id);
      this.pending.delete(f.id);
      if (f.error) reject(new HeraldError(f.error.code, f.error.message));
      else resolve(f.ok);
      return;
    }
    if (f.type === 'message') {
      const { type, cursor, ...envelope } = f;
      this.client._deliver(envelope);
    } else if (f.type === 'reset') {
      const { type, ...reset } = f;
      this.client._reset(reset);
    } else if (f.type === 'presence') {
      const { type, ...event } = f;
      this.client._presence(event);
    }
  }

  subscribe(channel) {
    const cursor = this.client._cursorFor(channel);
    this.request({ op: 'subscribe', channel, ...(cursor ? { cursor } : {}) })
      .then((ok) => this.client._subscribed(channel, ok && ok.cursor))
      .catch((err) => this.client._subscribeFailed(channel, err));
  }

  unsubscribe(channel) {
    this.request({ op: 'unsubscribe', channel }).catch(() => {});
  }

  refresh(token) {
    return this.request({ op: 'refresh', token });
  }

  publish(channel, data, event) {
    return this.request({ op: 'publish', channel, data, ...(event ? { event } : {}) });
  }

  presence(channel) {
    return this.request({ op: 'presence', channel }).then((ok) => ok.members);
  }

  stop() {
    this.closed = true;
    this._stopTimers();
    try { this.ws && this.ws.close(1000); } catch { /* ignore */ }
  }
}

/** Server-Sent Events: one EventSource for all channels; channel changes reconnect it. */
class SseTransport {
  constructor(client) {
    this.name = 'sse';
    this.client = client;
    this.es = null;
    this.opened = false;
    this.closed = false;
  }

  start() {
    const c = this.client;
    const channels = c._channels();
    const q = channels.map((ch) => `channel=${encodeURIComponent(ch)}`);
    const cursor = c._cursorOver(channels);
    if (cursor) q.push(`cursor=${encodeURIComponent(cursor)}`);
    if (c._token) q.push(`token=${encodeURIComponent(c._token)}`);
    // Every message as `event: message`: the envelope keeps its name, and no
    // event name has to be known in advance.
    q.push('dispatch=message');
    const url = c._url(`/events?${q.join('&')}`);
    this.url = url;
    const es = new EventSource(url);
    this.es = es;
    // A buffering proxy lets headers through but holds the body: wait for the
    // server's first event, not just for `open`.
    const openTimer = setTimeout(() => this._fail('open_timeout'), c.opts.openTimeout);
    es.addEventListener('open', (e) => {
      if (!e.data) return; // the EventSource `open` (headers) event has no data
      clearTimeout(openTimer);
      let hb = 0;
      let at = null;
      try { ({ heartbeat: hb = 0, cursor: at = null } = JSON.parse(e.data)); } catch { /* an older server */ }
      this._watch(hb);
      // The position this stream starts from: a reconnect before the first
      // message resumes from it (nothing published meanwhile is lost).
      const parts = splitCursor(at || '');
      for (const ch of channels) c._subscribed(ch, parts.get(ch));
      if (!this.opened) {
        this.opened = true;
        c._transportOpen(this);
      }
    });
    es.onmessage = (e) => { this._seen(); this._message(e); };
    es.addEventListener('reset', (e) => { this._seen(); c._reset(JSON.parse(e.data)); });
    es.addEventListener('presence', (e) => { this._seen(); c._presence(JSON.parse(e.data)); });
    es.addEventListener('heartbeat', () => this._seen());
    es.addEventListener('disconnect', () => this._fail('server_restart'));
    es.addEventListener('error', (e) => {
      if (e.data) {
        let info = {};
        try { info = JSON.parse(e.data); } catch { /* ignore */ }
        clearTimeout(openTimer);
        this._end({ reason: info.code || 'error', auth: info.code === 'token_expired' });
        return;
      }
      clearTimeout(openTimer);
      this._diagnose();
    });
  }

  /** A stream open on both ends may still go silent on the way (a NAT entry or
   *  a proxy that dropped it without a close): the server sends a heartbeat
   *  event every `hb` ms on a quiet stream, so silence for longer than
   *  silenceTimeout (default 2 x hb + 2 s) means the stream is dead: reconnect,
   *  with the cursor. */
  _watch(hb) {
    const limit = this.client.opts.silenceTimeout || (hb > 0 ? 2 * hb + 2000 : 0);
    clearInterval(this.watchdog);
    this.lastSeen = Date.now();
    if (!limit) return; // the server announced no heartbeat: nothing to watch
    this.watchdog = setInterval(() => {
      if (Date.now() - this.lastSeen > limit) this._fail('silent');
    }, Math.max(250, Math.min(limit / 4, 5000)));
  }

  _seen() {
    this.lastSeen = Date.now();
  }

  _message(e) {
    let env;
    try { env = JSON.parse(e.data); } catch { return; }
    this.client._deliver(env);
  }

  /** EventSource hides HTTP statuses: ask with fetch why the stream failed. */
  async _diagnose() {
    if (this.closed) return;
    try { this.es.close(); } catch { /* ignore */ }
    let info = { reason: 'network' };
    try {
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(), 3000);
      const res = await fetch(this.url, { signal: ctl.signal, headers: { accept: 'text/event-stream' } });
      clearTimeout(timer);
      if (!res.ok) {
        const err = await errorOf(res);
        info = { reason: err.code, auth: res.status === 401, fatal: FATAL_HTTP.has(res.status), error: err };
      }
      ctl.abort();
    } catch { /* network: keep 'network' */ }
    this._end(info);
  }

  _fail(reason) {
    if (this.closed) return;
    try { this.es.close(); } catch { /* ignore */ }
    this._end({ reason });
  }

  _end(info) {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.watchdog);
    try { this.es.close(); } catch { /* ignore */ }
    this.client._transportClosed(this, { ...info, opened: this.opened });
  }

  subscribe() { this.client._restartSoon(); }
  unsubscribe() { this.client._restartSoon(); }
  refresh() { this.client._restartSoon(); return Promise.resolve(); }

  stop() {
    this.closed = true;
    clearInterval(this.watchdog);
    try { this.es && this.es.close(); } catch { /* ignore */ }
  }
}

/** Long-polling: the fallback that passes every proxy. */
class LongPollTransport {
  constructor(client) {
    this.name = 'longpoll';
    this.client = client;
    /** Channels whose first answer came on this transport (onSubscribed told). */
    this.confirmed = new Set();
    this.opened = false;
    this.closed = false;
    this.ctl = null;
  }

  start() {
    this._loop();
  }

  async _loop() {
    const c = this.client;
    let first = true;
    while (!this.closed) {
      const channels = c._channels();
      if (channels.length === 0) {
        await new Promise((r) => { this.wake = r; setTimeout(r, 1000); });
        continue;
      }
      const q = channels.map((ch) => `channel=${encodeURIComponent(ch)}`);
      const cursor = c._cursorOver(channels);
      if (cursor) q.push(`cursor=${encodeURIComponent(cursor)}`);
      const timeout = first ? 0 : c.opts.pollTimeout;
      q.push(`timeout=${timeout}`);
      const token = c._token ? `token=${encodeURIComponent(c._token)}` : '';
      if (token) q.push(token);
      this.ctl = new AbortController();
      const timer = setTimeout(() => this.ctl.abort(), (first ? c.opts.openTimeout : (c.opts.pollTimeout * 1000 + 10000)));
      let url = c._url(`/poll?${q.join('&')}`);
      const init = { signal: this.ctl.signal, cache: 'no-store' };
      if (url.length > LONG_URL) {
        // Too long for proxies' request lines: channels and cursor go in a POST
        // body (a text/plain body: no CORS preflight). docs/protocol.md, Long-poll.
        url = c._url(`/poll?${token}`);
        Object.assign(init, { method: 'POST', body: JSON.stringify({ channels, ...(cursor ? { cursor } : {}), timeout }) });
      }
      let res;
      try {
        res = await fetch(url, init);
      } catch {
        clearTimeout(timer);
        if (this.closed) return;
        if (this.restart) { this.restart = false; continue; }
        this._end({ reason: first ? 'open_timeout' : 'network' });
        return;
      }
      clearTimeout(timer);
      if (!res.ok) {
        const err = await errorOf(res);
        this._end({ reason: err.code, auth: res.status === 401, fatal: FATAL_HTTP.has(res.status), error: err });
        return;
      }
      let body;
      try { body = await res.json(); } catch {
        if (this.closed) return;
        if (this.restart) { this.restart = false; continue; }
        this._end({ reason: 'bad_answer' });
        return;
      }
      if (this.closed) return;
      if (!this.opened) {
        this.opened = true;
        c._transportOpen(this);
      }
      first = false;
      // Resets first: they move the position that the messages then follow.
      for (const r of body.resets || []) c._reset(r);
      for (const m of body.messages || []) c._deliver(m);
      for (const p of body.presence || []) c._presence(p);
      c._adoptCursor(body.cursor, channels);
      const parts = splitCursor(body.cursor || '');
      for (const ch of channels) {
        if (this.confirmed.has(ch)) continue;
        this.confirmed.add(ch);
        c._subscribed(ch, parts.get(ch));
      }
    }
  }

  _end(info) {
    if (this.closed) return;
    this.closed = true;
    this.client._transportClosed(this, { ...info, opened: this.opened });
  }

  _poke() {
    this.restart = true;
    if (this.ctl) this.ctl.abort();
    if (this.wake) this.wake();
  }

  subscribe() { this._poke(); }
  unsubscribe() { this._poke(); }
  refresh() { return Promise.resolve(); }

  stop() {
    this.closed = true;
    if (this.ctl) this.ctl.abort();
    if (this.wake) this.wake();
  }
}

const TRANSPORT_CLASSES = { websocket: WebSocketTransport, sse: SseTransport, longpoll: LongPollTransport };

// ---------------------------------------------------------------- the client

/**
 * A connection to one Herald app.
 *
 * Options: url (default: this page's origin), app, token or getToken (async
 * function returning a fresh token), transports (ordered list of 'websocket',
 * 'sse', 'longpoll'), shareTabs (default true), and the timings openTimeout,
 * pingInterval, pongTimeout, pollTimeout, silenceTimeout, backoffBase,
 * backoffCap (ms, except pollTimeout in seconds).
 */
export class Herald {
  constructor(options) {
    const o = { ...options };
    if (!o.app) throw new TypeError('Herald: the "app" option is required');
    const transports = o.transports || TRANSPORTS;
    for (const t of transports) {
      if (!TRANSPORTS.includes(t)) throw new TypeError(`Herald: unknown transport "${t}"`);
    }
    this.opts = {
      openTimeout: 6000,
      pingInterval: 20000,
      pongTimeout: 10000,
      pollTimeout: 25,
      backoffBase: 500,
      backoffCap: 15000,
      shareTabs: true,
      ...o,
      transports: [...transports],
      url: (o.url || (typeof location !== 'undefined' ? location.origin : '')).replace(/\/+$/, ''),
    };
    this._token = o.token || null;
    this._subs = new Map(); // channel -> { handlers:Set, part, epoch, offset }
    this._listeners = { state: new Set() };
    this.state = 'disconnected';
    this.transport = null;
    this._t = null;
    this._attempt = 0;
    this._closed = false;
    this._failedInRow = 0;
    this._storeKey = `herald:transport:${this.opts.url}:${this.opts.app}`;
    this._online = () => { if (this.state === 'reconnecting') this._connectNow(); };
    if (typeof window !== 'undefined') window.addEventListener('online', this._online);
    this._tabs = null;
    if (this.opts.shareTabs && typeof BroadcastChannel !== 'undefined' && typeof navigator !== 'undefined' && navigator.locks) {
      this._tabs = new TabGroup(this);
    }
  }

  // ---- public API ----

  /** Subscribes to `channel`. Returns { channel, unsubscribe(), cursor }. */
  subscribe(channel, handlers = {}) {
    let s = this._subs.get(channel);
    const isNew = !s;
    if (!s) {
      s = { handlers: new Set(), part: null, epoch: null, offset: 0 };
      this._subs.set(channel, s);
    }
    if (handlers.cursor && !s.part) {
      const part = splitCursor(handlers.cursor).get(channel);
      if (part) Object.assign(s, { part }, positionOf(part));
    }
    const h = { ...handlers };
    s.handlers.add(h);
    if (isNew) {
      if (this._tabs && !this._tabs.leader) this._tabs.subscribe(channel);
      else this._ensureConnected(() => this._t && this._t.subscribe(channel));
    }
    const self = this;
    return {
      channel,
      get cursor() { const x = self._subs.get(channel); return x ? x.part : null; },
      unsubscribe() { self._unsubscribe(channel, h); },
    };
  }

  /** Publishes `data` to `channel` (the token needs a `publish` grant). */
  async publish(channel, data, options = {}) {
    if (this._tabs && !this._tabs.leader) return this._tabs.publish(channel, data, options.event);
    if (this._t && this._t.name === 'websocket' && this._t.opened && !this._t.closed) {
      return this._t.publish(channel, data, options.event);
    }
    await this._freshToken();
    const res = await fetch(this._url('/publish'), {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(this._token ? { authorization: `Bearer ${this._token}` } : {}) },
      body: JSON.stringify({ channel, data, ...(options.event ? { event: options.event } : {}) }),
    });
    if (!res.ok) throw await errorOf(res);
    return res.json();
  }

  /** Who is on `channel`: [{ user, info, connections }] (WebSocket only). */
  async presence(channel) {
    if (this._tabs && !this._tabs.leader) return this._tabs.presence(channel);
    if (this._t && this._t.name === 'websocket' && this._t.opened && !this._t.closed) return this._t.presence(channel);
    throw new HeraldError('unsupported', 'presence queries need the WebSocket transport; ask your backend (GET .../presence)');
  }

  /** Listens to 'state': fn({ state, transport }). Returns a function that removes it. */
  on(event, fn) {
    if (!this._listeners[event]) throw new TypeError(`Herald: unknown event "${event}"`);
    this._listeners[event].add(fn);
    return () => this._listeners[event].delete(fn);
  }

  /** Closes the connection and forgets every subscription. */
  close() {
    this._closed = true;
    clearTimeout(this._retryTimer);
    clearTimeout(this._refreshTimer);
    if (this._t) this._t.stop();
    this._t = null;
    if (this._tabs) this._tabs.close();
    if (typeof window !== 'undefined') window.removeEventListener('online', this._online);
    this._subs.clear();
    this._setState('disconnected');
  }

  // ---- internals shared with transports and tabs ----

  _url(path) {
    return `${this.opts.url}/v1/apps/${encodeURIComponent(this.opts.app)}${path}`;
  }

  _channels() {
    const own = [...this._subs.keys()];
    if (this._tabs && this._tabs.leader) {
      for (const ch of this._tabs.remoteChannels()) if (!own.includes(ch)) own.push(ch);
    }
    return own;
  }

  _cursorFor(channel) {
    const s = this._subs.get(channel);
    if (s && s.part) return s.part;
    return this._tabs ? this._tabs.cursorFor(channel) : null;
  }

  _cursorOver(channels) {
    return channels.map((c) => this._cursorFor(c)).filter(Boolean).join('.');
  }

  _adoptCursor(cursor, channels) {
    const parts = splitCursor(cursor);
    for (const ch of channels) {
      const s = this._subs.get(ch);
      const part = parts.get(ch);
      if (s && part && !s.part) Object.assign(s, { part }, positionOf(part));
      if (this._tabs) this._tabs.noteCursor(ch, part);
    }
  }

  /** A message from the transport (or the leader tab): dedupe, advance, dispatch. */
  _deliver(env, fromTab = false) {
    if (this._tabs && this._tabs.leader && !fromTab) this._tabs.broadcast({ kind: 'msg', env });
    const s = this._subs.get(env.channel);
    if (!s) return;
    if (s.epoch === env.epoch && env.offset <= s.offset) return; // seen already
    s.epoch = env.epoch;
    s.offset = env.offset;
    s.part = cursorOf(env);
    for (const h of s.handlers) {
      if (h.onMessage) {
        try { h.onMessage(env); } catch (e) { setTimeout(() => { throw e; }); }
      }
    }
  }

  /** The server confirmed the subscription to `channel`, from `cursor` (the
   *  position the messages that follow come after): a reconnect before the
   *  first message resumes from there, and the handlers' onSubscribed are told. */
  _subscribed(channel, cursor, fromTab = false) {
    if (this._tabs && this._tabs.leader && !fromTab) this._tabs.broadcast({ kind: 'subscribed', channel, cursor });
    if (cursor) this._adoptCursor(cursor, [channel]);
    const s = this._subs.get(channel);
    if (!s) return;
    const info = { channel, cursor: s.part || cursor || null };
    for (const h of s.handlers) {
      if (h.onSubscribed) {
        try { h.onSubscribed(info); } catch (e) { setTimeout(() => { throw e; }); }
      }
    }
  }

  _reset(r, fromTab = false) {
    if (this._tabs && this._tabs.leader && !fromTab) this._tabs.broadcast({ kind: 'reset', r });
    const s = this._subs.get(r.channel);
    if (!s) return;
    s.part = r.cursor;
    s.epoch = r.epoch;
    s.offset = r.offset;
    for (const h of s.handlers) if (h.onReset) h.onReset(r);
  }

  _presence(p, fromTab = false) {
    if (this._tabs && this._tabs.leader && !fromTab) this._tabs.broadcast({ kind: 'presence-ev', p });
    const s = this._subs.get(p.channel);
    if (!s) return;
    for (const h of s.handlers) if (h.onPresence) h.onPresence(p);
  }

  _subscribeFailed(channel, err) {
    const s = this._subs.get(channel);
    if (!s) return;
    if (err.code === 'disconnected') return; // resubscribed on reconnect
    if (err.code === 'unauthorized' && this.opts.getToken) {
      // Subscribed without a token where one is needed: get one and connect
      // again (the subscription stays; 403 `forbidden` below is final).
      if (this._t && this._t.name === 'websocket') {
        this._t.stop();
        this._t = null;
        this._token = null;
        this._scheduleRetry();
      }
      return;
    }
    this._subs.delete(channel);
    for (const h of s.handlers) if (h.onError) h.onError(err);
  }

  _unsubscribe(channel, h) {
    const s = this._subs.get(channel);
    if (!s) return;
    s.handlers.delete(h);
    if (s.handlers.size > 0) return;
    this._subs.delete(channel);
    if (this._tabs && !this._tabs.leader) this._tabs.unsubscribe(channel);
    else if (this._t && !(this._tabs && this._tabs.remoteChannels().includes(channel))) this._t.unsubscribe(channel);
  }

  _setState(state) {
    const transport = this._t && this._t.opened ? this._t.name : null;
    if (state === this.state && transport === this.transport) return;
    this.state = state;
    this.transport = transport;
    for (const fn of this._listeners.state) {
      try { fn({ state, transport }); } catch (e) { setTimeout(() => { throw e; }); }
    }
    if (this._tabs && this._tabs.leader) this._tabs.broadcast({ kind: 'state', state, transport });
  }

  _ensureConnected(then) {
    if (this._closed) return;
    if (this._tabs && !this._tabs.decided) { this._tabs.whenDecided(() => this._ensureConnected(then)); return; }
    if (this._tabs && !this._tabs.leader) return;
    if (this._t) { then(); return; }
    if (this._retryTimer) return;
    this._connectNow();
  }

  _order() {
    const list = this.opts.transports;
    let remembered = null;
    try { remembered = localStorage.getItem(this._storeKey); } catch { /* no storage */ }
    if (remembered && list.includes(remembered)) return [remembered, ...list.filter((t) => t !== remembered)];
    return list;
  }

  async _connectNow() {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (this._closed) return;
    if (this._t) { this._t.stop(); this._t = null; }
    this._setState(this._attempt === 0 && this._failedInRow === 0 ? 'connecting' : 'reconnecting');
    try {
      await this._freshToken();
    } catch (e) {
      this._scheduleRetry();
      return;
    }
    if (this._closed || this._t) return;
    const order = this._order();
    const name = order[Math.min(this._failedInRow, order.length - 1)];
    const T = TRANSPORT_CLASSES[name];
    this._t = new T(this);
    this._t.start();
  }

  _transportOpen(t) {
    if (t !== this._t) return;
    this._attempt = 0;
    this._failedInRow = 0;
    try { localStorage.setItem(this._storeKey, t.name); } catch { /* no storage */ }
    this._setState('connected');
    this._scheduleRefresh();
  }

  _transportClosed(t, info) {
    if (t !== this._t || this._closed) return;
    this._t = null;
    if (info.fatal) {
      this.lastError = info.error || new HeraldError(info.reason, info.reason);
      this._setState('disconnected');
      return;
    }
    if (info.auth) {
      this._token = null; // force getToken() on the next try
      if (!this.opts.getToken) {
        this.lastError = info.error || new HeraldError('unauthorized', 'the token was refused and there is no getToken() to renew it');
        this._setState('disconnected');
        return;
      }
    }
    if (!info.opened && !info.auth) {
      // It never opened: try the next transport at once, then back off.
      this._failedInRow += 1;
      if (this._failedInRow < this.opts.transports.length) {
        this._setState('reconnecting');
        this._connectNow();
        return;
      }
      this._failedInRow = 0;
    }
    this._setState('reconnecting');
    if (info.reason === 'server_restart' || (info.opened && this._attempt === 0)) {
      // A server restart or a first drop after a good connection: retry soon.
      this._attempt += 1;
      this._retryTimer = setTimeout(() => this._connectNow(), Math.random() * this.opts.backoffBase);
      return;
    }
    this._scheduleRetry();
  }

  _scheduleRetry() {
    this._setState('reconnecting');
    const ceiling = Math.min(this.opts.backoffCap, this.opts.backoffBase * 2 ** this._attempt);
    this._attempt += 1;
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => this._connectNow(), Math.random() * ceiling); // full jitter
  }

  /** Channel set changed on a transport that needs a new request (SSE): reconnect soon, once. */
  _restartSoon() {
    if (this._restartTimer) return;
    this._restartTimer = setTimeout(() => {
      this._restartTimer = null;
      if (!this._t || this._closed) return;
      const t = this._t;
      t.stop();
      this._t = null;
      const T = TRANSPORT_CLASSES[t.name];
      this._t = new T(this);
      this._t.start();
    }, 10);
  }

  async _freshToken() {
    const exp = this._token && tokenExpiry(this._token);
    const stale = !this._token || (exp && exp - Date.now() < 5000);
    if (stale && this.opts.getToken) this._token = await this.opts.getToken();
  }

  _scheduleRefresh() {
    clearTimeout(this._refreshTimer);
    if (!this.opts.getToken || !this._token) return;
    const exp = tokenExpiry(this._token);
    if (!exp) return;
    const lifetime = exp - Date.now();
    const wait = Math.max(1000, Math.min(lifetime - 30000, lifetime * 0.8));
    this._refreshTimer = setTimeout(async () => {
      try {
        this._token = await this.opts.getToken();
        if (this._t) await this._t.refresh(this._token);
        this._scheduleRefresh();
      } catch {
        this._refreshTimer = setTimeout(() => this._scheduleRefresh(), 2000);
      }
    }, wait);
  }
}

// ---------------------------------------------------------------- tabs
//
// Several tabs of one origin share one connection: the tab holding the Web Lock
// is the leader and owns the transport; the others (followers) send it their
// subscriptions over a BroadcastChannel and receive every delivery. When the
// leader closes, the lock passes to another tab, which collects every tab's
// channels and cursors and resumes them, so nothing is lost in the hand-over.

class TabGroup {
  constructor(client) {
    this.client = client;
    this.id = Math.random().toString(36).slice(2);
    const who = tokenSubject(client._token || '');
    this.name = `herald:${client.opts.url}:${client.opts.app}:${who}`;
    this.bc = new BroadcastChannel(this.name);
    this.leader = false;
    this.decided = false;
    this.waiters = [];
    this.remote = new Map(); // leader: channel -> Set(tabId)
    this.cursors = new Map(); // leader: channel -> part (from followers)
    this.calls = new Map();
    this.nextCall = 1;
    this.bc.onmessage = (e) => this._onMessage(e.data);
    this.released = null;
    navigator.locks.request(this.name, { ifAvailable: true }, (lock) => {
      if (lock) return this._lead();
      this._follow();
      // Queue for the lock: become leader when the current one goes away.
      navigator.locks.request(this.name, () => this._lead());
      return undefined;
    });
  }

  whenDecided(fn) { if (this.decided) fn(); else this.waiters.push(fn); }

  _decide() {
    this.decided = true;
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }

  _lead() {
    if (this.closedGroup) return undefined;
    this.leader = true;
    const wasFollower = this.decided;
    this._decide();
    this.bc.postMessage({ kind: 'leader', from: this.id });
    if (wasFollower || this.client._subs.size > 0) this.client._ensureConnected(() => {});
    return new Promise((resolve) => { this.released = resolve; });
  }

  _follow() {
    this.leader = false;
    this._decide();
    this.bc.postMessage({ kind: 'hello', from: this.id });
    for (const ch of this.client._subs.keys()) this.subscribe(ch);
  }

  remoteChannels() { return [...this.remote.keys()]; }
  cursorFor(ch) { return this.cursors.get(ch) || null; }
  noteCursor(ch, part) { if (part) this.cursors.set(ch, part); }
  broadcast(msg) { this.bc.postMessage({ ...msg, from: this.id }); }

  subscribe(channel) {
    const s = this.client._subs.get(channel);
    this.bc.postMessage({ kind: 'sub', from: this.id, channel, cursor: s && s.part });
  }

  unsubscribe(channel) {
    this.bc.postMessage({ kind: 'unsub', from: this.id, channel });
  }

  _call(kind, args) {
    return new Promise((resolve, reject) => {
      const id = `${this.id}:${this.nextCall++}`;
      const timer = setTimeout(() => { this.calls.delete(id); reject(new HeraldError('timeout', 'the leader tab did not answer')); }, 10000);
      this.calls.set(id, { resolve, reject, timer });
      this.bc.postMessage({ kind, from: this.id, id, ...args });
    });
  }

  publish(channel, data, event) { return this._call('pub', { channel, data, event }); }
  presence(channel) { return this._call('presence-q', { channel }); }

  _onMessage(m) {
    const c = this.client;
    switch (m.kind) {
      case 'leader':
        // A new leader: tell it what this tab listens to, from where.
        if (!this.leader) for (const ch of c._subs.keys()) this.subscribe(ch);
        break;
      case 'hello':
        if (this.leader) this.bc.postMessage({ kind: 'state', from: this.id, state: c.state, transport: c.transport });
        break;
      case 'sub':
        if (!this.leader) break;
        if (m.cursor && !c._subs.get(m.channel)?.part) this.noteCursor(m.channel, m.cursor);
        if (!this.remote.has(m.channel)) this.remote.set(m.channel, new Set());
        if (!this.remote.get(m.channel).has(m.from)) {
          const fresh = !c._subs.has(m.channel) && this.remote.get(m.channel).size === 0;
          this.remote.get(m.channel).add(m.from);
          if (fresh) c._ensureConnected(() => c._t && c._t.subscribe(m.channel));
        }
        break;
      case 'unsub':
        if (!this.leader || !this.remote.has(m.channel)) break;
        this.remote.get(m.channel).delete(m.from);
        if (this.remote.get(m.channel).size === 0) {
          this.remote.delete(m.channel);
          if (!c._subs.has(m.channel) && c._t) c._t.unsubscribe(m.channel);
        }
        break;
      case 'msg':
        if (!this.leader) c._deliver(m.env, true);
        else if (m.env) this.noteCursor(m.env.channel, cursorOf(m.env));
        break;
      case 'reset':
        if (!this.leader) c._reset(m.r, true);
        break;
      case 'subscribed':
        if (!this.leader) c._subscribed(m.channel, m.cursor, true);
        break;
      case 'presence-ev':
        if (!this.leader) c._presence(m.p, true);
        break;
      case 'state':
        if (!this.leader) {
          c.state = m.state;
          c.transport = m.transport;
          for (const fn of c._listeners.state) fn({ state: m.state, transport: m.transport });
        }
        break;
      default:
        break;
    }
    if (this.leader && (m.kind === 'pub' || m.kind === 'presence-q')) {
      const work = m.kind === 'pub' ? c.publish(m.channel, m.data, { event: m.event }) : c.presence(m.channel);
      work.then(
        (ok) => this.bc.postMessage({ kind: 'answer', id: m.id, ok }),
        (err) => this.bc.postMessage({ kind: 'answer', id: m.id, error: { code: err.code, message: err.message } }),
      );
    }
    if (m.kind === 'answer' && this.calls.has(m.id)) {
      const call = this.calls.get(m.id);
      this.calls.delete(m.id);
      clearTimeout(call.timer);
      if (m.error) call.reject(new HeraldError(m.error.code, m.error.message));
      else call.resolve(m.ok);
    }
  }

  close() {
    this.closedGroup = true;
    if (!this.leader) for (const ch of this.client._subs.keys()) this.unsubscribe(ch);
    if (this.released) this.released();
    this.bc.close();
  }
}

export { HeraldError };
