// Messages published by the server API appear in the page, on each forced transport.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connected, createApp, launch, offsets, openClient, publish, startHerald, until } from './harness.mjs';

let server;
let browser;
let app;

before(async () => {
  server = await startHerald();
  app = await createApp(server, 'transports');
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.cleanup();
});

for (const transport of ['websocket', 'sse', 'longpoll']) {
  test(`messages reach the page over ${transport}, in order, once`, async () => {
    const { sign } = await import('./harness.mjs');
    const channel = `news:${transport}`;
    const token = sign(app, { sub: 'alice', channels: ['*'] });
    const context = await browser.newContext();
    const page = await openClient(context, server.url, { app: app.name, token, transports: [transport], channel });
    assert.equal(await connected(page), transport);
    for (let i = 1; i <= 20; i++) await publish(server, app, channel, { n: i }, i % 2 ? undefined : 'tick');
    await until(async () => (await offsets(page)).length >= 20, 10000, '20 messages');
    const got = await page.evaluate(() => window.got);
    assert.deepEqual(got.map((m) => m.offset), Array.from({ length: 20 }, (_, i) => i + 1));
    assert.deepEqual(got.map((m) => m.data.n), Array.from({ length: 20 }, (_, i) => i + 1));
    assert.equal(got[1].event, 'tick', 'custom event names arrive too');
    assert.equal(got[0].channel, channel);
    await context.close();
  });
}

test('a page publishes with its token and sees its own message', async () => {
  const { sign } = await import('./harness.mjs');
  const token = sign(app, { sub: 'bob', channels: ['*'], publish: ['chat:*'] });
  const context = await browser.newContext();
  const page = await openClient(context, server.url, { app: app.name, token, channel: 'chat:lobby' });
  await connected(page);
  const res = await page.evaluate(() => window.h.publish('chat:lobby', { text: 'hi' }));
  assert.equal(res.channel, 'chat:lobby');
  await until(async () => (await offsets(page)).length === 1, 5000, 'own message');
  const refused = await page.evaluate(() => window.h.publish('news', 1).then(() => 'ok', (e) => e.code));
  assert.equal(refused, 'forbidden');
  await context.close();
});
