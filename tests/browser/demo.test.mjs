// The demo page as a new user tries it: connect, publish, see it, force a transport.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, startHerald } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startHerald();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.cleanup();
});

for (const choice of ['Automatic', 'WebSocket', 'Server-Sent Events', 'Long-poll']) {
  test(`demo page works with transport: ${choice}`, async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${server.url}/demo/`);
    await page.getByLabel('Your name', { exact: true }).fill('ada');
    await page.getByLabel(choice, { exact: true }).check();
    await page.getByRole('button', { name: 'Connect', exact: true }).click();
    await page.locator('#state').filter({ hasText: 'connected' }).waitFor({ timeout: 15000 });
    const transport = await page.locator('#transport').textContent();
    const expected = { Automatic: 'websocket', WebSocket: 'websocket', 'Server-Sent Events': 'sse', 'Long-poll': 'longpoll' }[choice];
    assert.equal(transport, expected);
    await page.getByLabel('Message', { exact: true }).fill('hello from ada');
    await page.getByRole('button', { name: 'Publish' }).click();
    await page.getByRole('list', { name: 'Received messages' }).getByText('hello from ada').waitFor({ timeout: 10000 });
    await context.close();
  });
}

test('two windows of the demo see each other', async () => {
  const context1 = await browser.newContext();
  const context2 = await browser.newContext();
  const p1 = await context1.newPage();
  const p2 = await context2.newPage();
  for (const [p, name] of [[p1, 'ann'], [p2, 'ben']]) {
    await p.goto(`${server.url}/demo/`);
    await p.getByLabel('Your name', { exact: true }).fill(name);
    await p.getByLabel('Channel', { exact: true }).fill('demo:pair');
    await p.getByRole('button', { name: 'Connect', exact: true }).click();
    await p.locator('#state').filter({ hasText: 'connected' }).waitFor({ timeout: 15000 });
  }
  await p1.getByLabel('Message', { exact: true }).fill('ping from ann');
  await p1.getByRole('button', { name: 'Publish' }).click();
  await p2.getByText('ping from ann').waitFor({ timeout: 10000 });
  await context1.close();
  await context2.close();
});
