// Connections are cut while messages are published: every message arrives exactly
// once, in order, on every transport. And where history expired meanwhile, onReset.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connected, createApp, launch, offsets, openClient, Proxy, publish, sign, startHerald, subscribed, until } from './harness.mjs';

let server;
let browser;
let app;

before(async () => {
  server = await startHerald({ config: '[namespaces.brief]\nhistory_ttl = "1s"\n' });
  app = await createApp(server, 'resume');
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.cleanup();
});

for (const transport of ['websocket', 'sse', 'longpoll']) {
  test(`cut connections while publishing over ${transport}: exactly once, in order`, async () => {
    const proxy = await new Proxy(server.url).listen();
    const channel = `cut:${transport}`;
    const token = sign(app, { sub: 'alice', channels: ['*'] });
    const context = await browser.newContext();
    const page = await openClient(context, proxy.url, {
      app: app.name, token, transports: [transport], channel, extra: { backoffBase: 100, backoffCap: 400 },
    });
    await connected(page);
    // Connected is not subscribed (a WebSocket subscribes after it opens):
    // what is published before the server confirms is not this page's.
    await subscribed(page);
    const total = 60;
    for (let i = 1; i <= total; i++) {
      await publish(server, app, channel, { n: i });
      if (i % 15 === 0) proxy.cut();
      await new Promise((r) => setTimeout(r, 20));
    }
    try {
      await until(async () => (await offsets(page)).length >= total, 20000, `${total} messages`);
    } catch (e) {
      const seen = await offsets(page);
      const states = await page.evaluate(() => window.states.map((s) => `${s.state}${s.reason ? `(${s.reason})` : ''}`));
      const errors = await page.evaluate(() => window.errors || []);
      throw new Error(`${e.message}; got ${seen.length}: ${seen.join(',')}; states: ${states.join(' ')}; errors: ${JSON.stringify(errors)}`);
    }
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(await offsets(page), Array.from({ length: total }, (_, i) => i + 1));
    if (transport !== 'longpoll') {
      // (A cut between two polls goes unnoticed: the browser retries the request.)
      assert.ok((await page.evaluate(() => window.states.filter((s) => s.state === 'reconnecting').length)) >= 1, 'it did reconnect');
    }
    await context.close();
    await proxy.close();
  });
}

for (const transport of ['websocket', 'sse', 'longpoll']) {
  test(`cut before the first message over ${transport}: what was published meanwhile arrives`, async () => {
    const proxy = await new Proxy(server.url).listen();
    const channel = `early:${transport}`;
    const token = sign(app, { sub: 'alice', channels: ['*'] });
    const context = await browser.newContext();
    const page = await openClient(context, proxy.url, {
      app: app.name, token, transports: [transport], channel, extra: { backoffBase: 200, backoffCap: 400, pollTimeout: 1 },
    });
    await connected(page);
    const [first] = await subscribed(page);
    assert.equal(first.channel, channel);
    assert.ok(first.cursor, 'the confirmation carries the position the subscription starts from');
    // Away before any message came: the page only has the subscription's cursor.
    proxy.refusing = true;
    proxy.cut();
    await publish(server, app, channel, 'a');
    await publish(server, app, channel, 'b');
    await new Promise((r) => setTimeout(r, 600));
    proxy.refusing = false;
    await until(async () => (await offsets(page)).length >= 2, 15000, 'the two messages published while away');
    await publish(server, app, channel, 'c');
    await until(async () => (await offsets(page)).length >= 3, 10000, 'live again');
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(await offsets(page), [1, 2, 3], 'nothing lost, nothing twice');
    assert.deepEqual(await page.evaluate(() => window.resets), []);
    await context.close();
    await proxy.close();
  });
}

test('history expired during the outage: the page is told with onReset', async () => {
  const proxy = await new Proxy(server.url).listen();
  const channel = 'brief:x';
  const token = sign(app, { sub: 'alice', channels: ['*'] });
  const context = await browser.newContext();
  const page = await openClient(context, proxy.url, {
    app: app.name, token, transports: ['websocket'], channel, extra: { backoffBase: 200, backoffCap: 400 },
  });
  await connected(page);
  await subscribed(page);
  await publish(server, app, channel, 1);
  await until(async () => (await offsets(page)).length === 1, 5000, 'first message');
  proxy.refusing = true;
  proxy.cut();
  await publish(server, app, channel, 2);
  await publish(server, app, channel, 3);
  await new Promise((r) => setTimeout(r, 1600)); // history (1 s) expires while away
  proxy.refusing = false;
  await until(async () => (await page.evaluate(() => window.resets.length)) >= 1, 15000, 'a reset');
  const reset = await page.evaluate(() => window.resets[0]);
  assert.equal(reset.channel, channel);
  assert.equal(reset.reason, 'history_gone');
  await publish(server, app, channel, 4);
  await until(async () => (await offsets(page)).includes(4), 5000, 'live again after the reset');
  assert.deepEqual(await offsets(page), [1, 4], 'nothing invented, nothing silently skipped');
  await context.close();
  await proxy.close();
});
