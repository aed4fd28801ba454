// Several tabs of one origin share one connection (a leader tab and a
// BroadcastChannel), and another tab takes over when the leader closes.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connected, connections, createApp, launch, offsets, openClient, publish, sign, startHerald, until } from './harness.mjs';

let server;
let browser;
let app;

before(async () => {
  server = await startHerald();
  app = await createApp(server, 'tabs');
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.cleanup();
});

test('two tabs, one connection; the second tab takes over when the first closes', async () => {
  const token = sign(app, { sub: 'alice', channels: ['*'] });
  const context = await browser.newContext();
  const a = await openClient(context, server.url, { app: app.name, token, shareTabs: true, channel: 'tabs:x', extra: { backoffBase: 100 } });
  await connected(a);
  const b = await openClient(context, server.url, { app: app.name, token, shareTabs: true, channel: 'tabs:x' });
  await connected(b);
  await until(async () => {
    const c = await connections(server);
    return c.websocket + c.sse + c.longpoll === 1;
  }, 5000, 'one connection for two tabs');
  for (let i = 1; i <= 5; i++) await publish(server, app, 'tabs:x', i);
  await until(async () => (await offsets(a)).length === 5 && (await offsets(b)).length === 5, 8000, 'both tabs got 5');
  assert.deepEqual(await offsets(b), [1, 2, 3, 4, 5]);

  // A tab can publish through the leader.
  const pub = await b.evaluate(() => window.h.publish('tabs:x', 'from b').then(() => 'ok', (e) => e.code));
  assert.equal(pub, 'forbidden', 'the token has no publish grant, and the answer comes back to the tab');

  await a.close();
  for (let i = 6; i <= 10; i++) await publish(server, app, 'tabs:x', i);
  await until(async () => (await offsets(b)).length === 10, 15000, 'tab b got 10 after taking over');
  assert.deepEqual(await offsets(b), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  await until(async () => {
    const c = await connections(server);
    return c.websocket + c.sse + c.longpoll === 1;
  }, 5000, 'still one connection');
  await context.close();
});
