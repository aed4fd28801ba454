// A stream that stays open but goes silent on the way (a dead NAT entry, a
// proxy that stopped forwarding) is noticed by the SDK through the server's
// heartbeat events, and resumed with its cursor: nothing lost, nothing twice.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connected, createApp, launch, offsets, openClient, Proxy, publish, sign, startHerald, until } from './harness.mjs';

let server;
let browser;
let app;

before(async () => {
  server = await startHerald({ config: '[transport]\nsse_heartbeat = "500ms"\n' });
  app = await createApp(server, 'silent');
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.cleanup();
});

test('an SSE stream frozen on the way is resumed from its cursor', async () => {
  const proxy = await new Proxy(server.url).listen();
  const channel = 'frozen:sse';
  const token = sign(app, { sub: 'alice', channels: ['*'] });
  const context = await browser.newContext();
  const page = await openClient(context, proxy.url, {
    app: app.name, token, transports: ['sse'], channel, extra: { backoffBase: 100, backoffCap: 400 },
  });
  assert.equal(await connected(page), 'sse');
  for (let i = 1; i <= 3; i++) await publish(server, app, channel, { n: i });
  await until(async () => (await offsets(page)).length === 3, 5000, 'three messages');
  // The stream stays open on both sides, but nothing reaches the page any more.
  proxy.freeze();
  const frozenAt = Date.now();
  for (let i = 4; i <= 6; i++) await publish(server, app, channel, { n: i });
  // Heartbeats every 500 ms: the SDK gives up on the stream after 2 x 500 ms
  // + 2 s of silence, and reconnects with its cursor.
  await until(async () => (await offsets(page)).length >= 6, 15000, 'the messages published while frozen');
  const took = Date.now() - frozenAt;
  assert.ok(took >= 2000, `not before the silence limit (${took} ms)`);
  await publish(server, app, channel, { n: 7 });
  await until(async () => (await offsets(page)).length >= 7, 5000, 'live again');
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(await offsets(page), [1, 2, 3, 4, 5, 6, 7], 'nothing lost, nothing twice');
  const states = await page.evaluate(() => window.states.map((s) => s.state));
  assert.ok(states.includes('reconnecting'), `it reconnected: ${states}`);
  await context.close();
  await proxy.close();
});
