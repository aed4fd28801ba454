// Messages published by the server API appear in the page, on each forced transport.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connected, createApp, launch, offsets, openClient, publish, startHerald, subscribed, until } from './harness.mjs';

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
    await subscribed(page);
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
  await subscribed(page);
  const res = await page.evaluate(() => window.h.publish('chat:lobby', { text: 'hi' }));
  assert.equal(res.channel, 'chat:lobby');
  await until(async () => (await offsets(page)).length === 1, 5000, 'own message');
  const refused = await page.evaluate(() => window.h.publish('news', 1).then(() => 'ok', (e) => e.code));
  assert.equal(refused, 'forbidden');
  await context.close();
});

test('subscribe from a snapshot cursor: only what follows the snapshot, then live', async () => {
  const { sign } = await import('./harness.mjs');
  const channel = 'board:1';
  for (let i = 1; i <= 3; i++) await publish(server, app, channel, { n: i });
  // The app's backend answers a snapshot with the position it is valid at (offset 2).
  const res = await fetch(`${server.url}/v1/apps/${app.name}/channels/${channel}/history?since=1&limit=1`, {
    headers: { authorization: `Bearer ${app.key}` },
  });
  const snapshot = await res.json();
  const atTwo = snapshot.messages[0];
  assert.equal(atTwo.offset, 2);
  const token = sign(app, { sub: 'carol', channels: ['*'] });
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${server.url}/demo/`);
  await page.evaluate(async ({ appName, token, atTwo }) => {
    const { Herald, cursorOf } = await import('/sdk/herald.js');
    window.got = [];
    window.h = new Herald({ app: appName, token, shareTabs: false });
    window.h.subscribe(atTwo.channel, { cursor: cursorOf(atTwo), onMessage: (m) => window.got.push(m.offset) });
  }, { appName: app.name, token, atTwo });
  await until(async () => (await page.evaluate(() => window.got.length)) === 1, 8000, 'the message after the snapshot');
  await publish(server, app, channel, { n: 4 });
  await until(async () => (await page.evaluate(() => window.got.length)) === 2, 8000, 'a live message');
  assert.deepEqual(await page.evaluate(() => window.got), [3, 4]);
  await context.close();
});

test('refusals that retrying cannot fix end in disconnected, without a retry storm', async () => {
  const { sign } = await import('./harness.mjs');
  for (const transport of ['websocket', 'sse', 'longpoll']) {
    const context = await browser.newContext();
    const page = await context.newPage();
    let requests = 0;
    page.on('request', (r) => { if (r.url().includes('/v1/apps/')) requests += 1; });
    await page.goto(`${server.url}/demo/`);
    // A token for another app's secret: the app "nope" does not exist → 404.
    const token = sign(app, { sub: 'x', channels: ['*'] });
    await page.evaluate(async ({ token, transport }) => {
      const { Herald } = await import('/sdk/herald.js');
      window.h = new Herald({ app: 'nope', token, transports: [transport], shareTabs: false, backoffBase: 50, backoffCap: 100 });
      window.h.subscribe('news', {});
    }, { token, transport });
    await page.waitForFunction(() => window.h.state === 'disconnected' && window.h.lastError, null, { timeout: 10000 });
    const code = await page.evaluate(() => window.h.lastError.code);
    assert.equal(code, 'app_not_found', `${transport}: ${code}`);
    const seen = requests;
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(requests, seen, `${transport}: no more attempts after a 404`);
    await context.close();
  }
});

test('a long-poll whose cursor is too long for a URL carries on in a POST body', async () => {
  const { sign } = await import('./harness.mjs');
  const token = sign(app, { sub: 'carol', channels: ['*'] });
  const context = await browser.newContext();
  const page = await openClient(context, server.url, { app: app.name, token, transports: ['longpoll'], channel: 'long:0' });
  assert.equal(await connected(page), 'longpoll');
  // 120 channels with 255-byte names: once each has a position, the cursor and
  // the names pass 64 KiB, more than any URL may hold.
  const names = Array.from({ length: 120 }, (_, i) => `long:${String(i).padStart(3, '0')}${'x'.repeat(247)}`);
  const publishAll = async (data) => {
    const results = [];
    for (const channels of [names.slice(0, 100), names.slice(100)]) {
      const res = await fetch(`${server.url}/v1/apps/${app.name}/publish`, {
        method: 'POST',
        headers: { authorization: `Bearer ${app.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ channels, data }),
      });
      assert.equal(res.status, 200);
      results.push(...(await res.json()).results);
    }
    return results;
  };
  // The page subscribes from the positions of a first round (as from a
  // snapshot): from its first poll on, the cursor is long.
  const positions = await publishAll({ round: 0 });
  const polls = [];
  page.on('request', (r) => { if (r.url().includes('/poll')) polls.push(r.method()); });
  await page.evaluate(async (positions) => {
    const { cursorOf } = await import('/sdk/herald.js');
    for (const p of positions) window.h.subscribe(p.channel, { cursor: cursorOf(p), onMessage: (m) => window.got.push(m) });
  }, positions);
  for (let round = 1; round <= 2; round++) {
    await until(async () => (await page.evaluate(() => window.h.state)) === 'connected', 10000, 'connected');
    await publishAll({ round });
    await until(async () => (await page.evaluate(() => window.got.length)) >= 120 * round, 15000, `round ${round}`);
  }
  const got = await page.evaluate(() => window.got.map((m) => `${m.channel}/${m.offset}`));
  assert.equal(got.length, 240, 'each message once');
  assert.equal(new Set(got).size, 240);
  assert.ok(got.every((g) => g.endsWith('/2') || g.endsWith('/3')), 'only what followed the positions');
  assert.ok(polls.includes('POST'), `polls went as POST once the cursor grew: ${[...new Set(polls)]}`);
  assert.equal(await page.evaluate(() => window.h.transport), 'longpoll');
  await context.close();
});
