// An expiring token is refreshed through getToken() without losing a message;
// a client that has no token yet gets 401 and asks getToken() again.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';
import { connected, createApp, launch, offsets, openClient, publish, sign, startHerald, subscribed, until } from './harness.mjs';

let server;
let browser;
let app;
let tokens;
let issued = 0;
// Per path: how many tokens were asked for (the first answer is empty: not signed in yet).
const asked = new Map();

before(async () => {
  server = await startHerald({ config: 'token_leeway = "0s"\n' });
  app = await createApp(server, 'tokens');
  browser = await launch();
  // The app's own backend: hands out short-lived tokens (3 s).
  tokens = http.createServer((req, res) => {
    res.writeHead(200, { 'access-control-allow-origin': '*', 'content-type': 'text/plain' });
    if (req.url.startsWith('/late/')) {
      asked.set(req.url, (asked.get(req.url) || 0) + 1);
      res.end(asked.get(req.url) === 1 ? '' : sign(app, { sub: 'bob', channels: ['*'], exp: Math.floor(Date.now() / 1000) + 3600 }));
      return;
    }
    issued += 1;
    res.end(sign(app, { sub: 'alice', channels: ['*'], exp: Math.floor(Date.now() / 1000) + 3 }));
  });
  await new Promise((r) => tokens.listen(0, '127.0.0.1', r));
});

after(async () => {
  await browser?.close();
  await server?.cleanup();
  tokens?.close();
});

for (const transport of ['websocket', 'sse', 'longpoll']) {
  test(`tokens expiring every 3 s are renewed over ${transport}, nothing lost`, async () => {
    const channel = `tok:${transport}`;
    const context = await browser.newContext();
    const before = issued;
    const page = await openClient(context, server.url, {
      app: app.name, transports: [transport], channel, getTokenUrl: `http://127.0.0.1:${tokens.address().port}/`,
      extra: { backoffBase: 100, backoffCap: 500 },
    });
    await connected(page);
    await subscribed(page);
    const total = 40;
    for (let i = 1; i <= total; i++) {
      await publish(server, app, channel, i);
      await new Promise((r) => setTimeout(r, 200)); // 8 s: past two expiries
    }
    await until(async () => (await offsets(page)).length >= total, 15000, `${total} messages`);
    assert.deepEqual(await offsets(page), Array.from({ length: total }, (_, i) => i + 1));
    assert.ok(issued - before >= 3, `getToken was called for renewals (${issued - before})`);
    await context.close();
  });
}

for (const transport of ['websocket', 'sse', 'longpoll']) {
  test(`no token yet: the 401 over ${transport} makes the client ask getToken() again`, async () => {
    const channel = `late:${transport}`;
    const path = `/late/${transport}`;
    const context = await browser.newContext();
    const page = await openClient(context, server.url, {
      app: app.name, transports: [transport], channel, getTokenUrl: `http://127.0.0.1:${tokens.address().port}${path}`,
      extra: { backoffBase: 100, backoffCap: 500 },
    });
    await until(async () => (asked.get(path) || 0) >= 2, 15000, 'a second getToken() call after the 401');
    await connected(page);
    // Subscribed for real: a message published now arrives.
    await until(async () => {
      await publish(server, app, channel, 1);
      return (await offsets(page)).length > 0;
    }, 15000, 'a message after the token arrived');
    assert.equal(await page.evaluate(() => window.h.lastError && window.h.lastError.code), undefined);
    await context.close();
  });
}
