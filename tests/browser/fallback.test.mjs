// Transport negotiation: with WebSocket refused by a proxy the SDK falls back to SSE;
// with SSE also held back by a buffering proxy, to long-poll; messages keep flowing.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connected, createApp, launch, offsets, openClient, Proxy, publish, sign, startHerald, until } from './harness.mjs';

let server;
let browser;
let app;

before(async () => {
  server = await startHerald();
  app = await createApp(server, 'fallback');
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.cleanup();
});

test('no WebSocket through the proxy: SSE, remembered for the next page', async () => {
  const proxy = await new Proxy(server.url).listen();
  proxy.blockUpgrade = true;
  const token = sign(app, { sub: 'alice', channels: ['*'] });
  const context = await browser.newContext();
  const page = await openClient(context, proxy.url, { app: app.name, token, channel: 'fb:sse', extra: { openTimeout: 3000 } });
  assert.equal(await connected(page), 'sse');
  for (let i = 1; i <= 5; i++) await publish(server, app, 'fb:sse', i);
  await until(async () => (await offsets(page)).length === 5, 8000, '5 messages over SSE');
  // The choice is remembered: a new page starts with SSE at once.
  const page2 = await openClient(context, proxy.url, { app: app.name, token, channel: 'fb:sse' });
  const first = await page2.evaluate(() => new Promise((resolve) => {
    if (window.h.transport) resolve(window.h.transport);
    window.h.on('state', (s) => { if (s.state === 'connected') resolve(s.transport); });
  }));
  assert.equal(first, 'sse');
  assert.ok(!(await page2.evaluate(() => window.states.some((s) => s.transport === 'websocket'))));
  await context.close();
  await proxy.close();
});

test('no WebSocket and a buffering proxy: long-poll', async () => {
  const proxy = await new Proxy(server.url).listen();
  proxy.blockUpgrade = true;
  proxy.bufferSse = true;
  const token = sign(app, { sub: 'alice', channels: ['*'] });
  const context = await browser.newContext();
  const page = await openClient(context, proxy.url, { app: app.name, token, channel: 'fb:lp', extra: { openTimeout: 2000 } });
  assert.equal(await connected(page, 20000), 'longpoll');
  for (let i = 1; i <= 5; i++) await publish(server, app, 'fb:lp', i);
  await until(async () => (await offsets(page)).length === 5, 8000, '5 messages over long-poll');
  assert.deepEqual(await offsets(page), [1, 2, 3, 4, 5]);
  await context.close();
  await proxy.close();
});
