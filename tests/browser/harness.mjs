// Helpers for the browser tests: a real `herald serve` child process, apps and
// tokens, a cutting/blocking/buffering proxy, and headless Chromium.

import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const HERALD_BIN = process.env.HERALD_BIN || new URL('../../target/debug/herald', import.meta.url).pathname;
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ADMIN_KEY = 'browser-tests-admin-key-0123456789';

/** Waits for `fn()` to be truthy, at most `ms`. */
export async function until(fn, ms = 10000, what = 'condition') {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** Starts `herald serve` on a free port with an optional TOML config. */
export async function startHerald({ config = '', dataDir } = {}) {
  const dir = dataDir || mkdtempSync(join(tmpdir(), 'herald-browser-'));
  const cfgPath = join(dir, 'herald.toml');
  writeFileSync(cfgPath, `demo_app = true\n${config}`);
  const child = spawn(HERALD_BIN, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dir, '--config', cfgPath, '--admin-key', ADMIN_KEY], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, HERALD_LOG: process.env.HERALD_LOG || 'warn' },
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`herald did not start:\n${out}\n${err}`)), 20000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/Open:\s+(http:\/\/[0-9.:]+)\//);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`herald exited with ${code}:\n${out}\n${err}`)); });
  });
  const server = {
    url,
    dir,
    adminKey: ADMIN_KEY,
    child,
    logs: () => err,
    async stop() {
      if (child.exitCode !== null) return;
      const done = new Promise((r) => child.on('exit', r));
      child.kill('SIGTERM');
      await done;
    },
    async cleanup() {
      await server.stop();
      if (!dataDir) rmSync(dir, { recursive: true, force: true });
    },
  };
  return server;
}

/** Creates an app through the admin API. */
/// Signs a new classroom user up through the page, starting at `next` (a
/// join link, say), and waits until the page says they are signed in.
export async function signUp(server, page, name, email, next = '/') {
  await page.goto(`${server.url}${next}`);
  await page.getByLabel('Your name', { exact: true }).fill(name);
  await page.getByLabel('Email address', { exact: true }).fill(email);
  await page.getByLabel('Choose a password', { exact: true }).fill('correct horse battery');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByText(`Signed in as ${name}`).waitFor({ timeout: 10000 });
}

export async function createApp(server, name) {
  const res = await fetch(`${server.url}/v1/admin/apps`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.adminKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name }),
  });
  if (res.status !== 201) throw new Error(`create app: ${res.status} ${await res.text()}`);
  const v = await res.json();
  return { name: v.app, key: v.key, tokenSecret: v.token_secret };
}

const b64url = (s) => Buffer.from(s).toString('base64url');

/** An HS256 client token. */
export function sign(app, claims) {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims }));
  const mac = createHmac('sha256', app.tokenSecret).update(`${header}.${body}`).digest('base64url');
  return `${header}.${body}.${mac}`;
}

/** Publishes with the app key; returns the JSON answer. */
export async function publish(server, app, channel, data, event) {
  const res = await fetch(`${server.url}/v1/apps/${app.name}/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${app.key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ channel, data, ...(event ? { event } : {}) }),
  });
  if (res.status !== 200) throw new Error(`publish: ${res.status} ${await res.text()}`);
  return res.json();
}

/** Open connections by transport, from /metrics. */
export async function connections(server) {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const out = { sse: 0, websocket: 0, longpoll: 0 };
  for (const m of text.matchAll(/^herald_connections\{transport="(\w+)"\} (\d+)/gm)) out[m[1]] = Number(m[2]);
  return out;
}

/** Headless Chromium from Debian's package. */
export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/**
 * A proxy in front of Herald, to play the network's tricks: refuse WebSocket
 * upgrades, buffer SSE streams, cut every connection, refuse new ones, freeze
 * the responses in flight (open, but nothing more arrives: a dead NAT entry).
 */
export class Proxy {
  constructor(target) {
    this.target = new URL(target);
    this.blockUpgrade = false;
    this.bufferSse = false;
    this.refusing = false;
    this.sockets = new Set();
    this.flows = new Set(); // responses in flight: { upRes, res }
    this.server = http.createServer((req, res) => this._http(req, res));
    this.server.on('upgrade', (req, socket, head) => this._upgrade(req, socket, head));
    this.server.on('connection', (s) => { this._track(s); if (this.refusing) s.destroy(); });
  }

  _track(s) {
    if (this.sockets.has(s)) return;
    this.sockets.add(s);
    s.on('close', () => this.sockets.delete(s));
  }

  async listen() {
    await new Promise((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  _http(req, res) {
    const up = http.request({
      host: this.target.hostname, port: this.target.port, method: req.method, path: req.url,
      headers: req.headers,
    }, (upRes) => {
      if (this.bufferSse && (upRes.headers['content-type'] || '').startsWith('text/event-stream')) {
        // A buffering proxy: hold the whole body until the upstream ends.
        const chunks = [];
        upRes.on('data', (c) => chunks.push(c));
        upRes.on('end', () => { res.writeHead(upRes.statusCode, upRes.headers); res.end(Buffer.concat(chunks)); });
        return;
      }
      res.writeHead(upRes.statusCode, upRes.headers);
      upRes.pipe(res);
      const flow = { upRes, res };
      this.flows.add(flow);
      upRes.on('close', () => this.flows.delete(flow));
    });
    up.on('socket', (s) => this._track(s));
    up.on('error', () => res.destroy());
    req.pipe(up);
  }

  _upgrade(req, socket, head) {
    if (this.blockUpgrade) {
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    const up = net.connect(Number(this.target.port), this.target.hostname, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      up.write(lines.join('\r\n') + '\r\n\r\n');
      if (head && head.length) up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    this._track(up);
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
  }

  /** Freezes every response in flight: both sockets stay open, nothing more
   *  reaches the client. Connections made later flow as usual. */
  freeze() {
    for (const { upRes, res } of this.flows) {
      upRes.unpipe(res);
      upRes.pause();
    }
    this.flows.clear();
  }

  /** Destroys every open connection (both sides). */
  cut() {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  async close() {
    this.cut();
    const closed = new Promise((r) => this.server.close(r));
    // Connections accepted after the cut (a client reconnecting at once) end too.
    this.server.closeAllConnections();
    this.cut();
    await closed;
  }
}

/** Opens a page on `base` and creates a Herald client in it; returns the page. */
export async function openClient(context, base, { app, token, transports, shareTabs = false, channel = 'news', getTokenUrl, extra = {} }) {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  await page.goto(`${base}/demo/`);
  await page.evaluate(async ({ app, token, transports, shareTabs, channel, getTokenUrl, extra }) => {
    const { Herald } = await import('/sdk/herald.js');
    window.got = [];
    window.resets = [];
    window.states = [];
    window.subscribed = [];
    window.errors = [];
    const opts = { app, token, shareTabs, ...extra };
    if (transports) opts.transports = transports;
    if (getTokenUrl) {
      window.tokenCalls = 0;
      opts.getToken = async () => { window.tokenCalls += 1; return (await fetch(getTokenUrl)).text(); };
    }
    window.h = new Herald(opts);
    window.h.on('state', (s) => window.states.push(s));
    window.sub = window.h.subscribe(channel, {
      onMessage: (m) => window.got.push(m),
      onReset: (r) => window.resets.push(r),
      onSubscribed: (info) => window.subscribed.push(info),
      onError: (e) => window.errors.push({ code: e.code, message: e.message }),
    });
  }, { app, token, transports, shareTabs, channel, getTokenUrl, extra });
  return page;
}

/** Waits until the page's client is connected; returns its transport. */
export async function connected(page, ms = 15000) {
  await page.waitForFunction(() => window.h && window.h.state === 'connected', null, { timeout: ms });
  return page.evaluate(() => window.h.transport);
}

/** Waits until the server confirmed the page's subscription (onSubscribed)
 *  at least `times` times; answers the confirmations. Messages published after
 *  the first reach the page. */
export async function subscribed(page, times = 1, ms = 15000) {
  await page.waitForFunction((n) => window.subscribed && window.subscribed.length >= n, times, { timeout: ms });
  return page.evaluate(() => window.subscribed);
}

/** The offsets the page received. */
export function offsets(page) {
  return page.evaluate(() => window.got.map((m) => m.offset));
}
