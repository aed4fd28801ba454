// Guests and activity as people meet them: the trainer lets guests in, a guest
// opens the join link and joins by name only, finds the live session, and the
// trainer sees them in "Who is here"; when the guest's page goes to the
// background the trainer sees them as away, and active again when they return.
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

/// Makes the page look hidden (another tab) or visible again, as the browser would.
async function setVisibility(page, state) {
  await page.evaluate((s) => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => s });
    document.dispatchEvent(new Event('visibilitychange'));
  }, state);
}

test('a guest joins by name, is seen here, away and back', async () => {
  const [tctx, gctx] = [await browser.newContext(), await browser.newContext()];
  const [trainer, guest] = [await tctx.newPage(), await gctx.newPage()];

  await trainer.goto(`${server.url}/`);
  await trainer.getByLabel('Your name', { exact: true }).fill('Tina Trainer');
  await trainer.getByLabel('Email address', { exact: true }).fill('tina.guest@example.org');
  await trainer.getByLabel('Choose a password', { exact: true }).fill('correct horse battery');
  await trainer.getByRole('button', { name: 'Create account' }).click();
  await trainer.getByLabel('Course title', { exact: true }).fill('Open lecture');
  await trainer.getByRole('button', { name: 'Create course' }).click();
  await trainer.getByRole('heading', { name: 'Open lecture' }).waitFor({ timeout: 10000 });
  const link = await trainer.locator('#join-link').getAttribute('href');

  // Guests not allowed yet: a clear refusal.
  await guest.goto(link);
  await guest.getByLabel('Name shown to others').fill('Gus');
  await guest.getByRole('button', { name: 'Join as guest' }).click();
  await guest.getByText(/does not take guests/).waitFor({ timeout: 10000 });

  await trainer.getByLabel('Let guests join live sessions by name').check();
  await trainer.getByText('Guests may join live sessions by name.').waitFor({ timeout: 10000 });
  await trainer.getByLabel('Session title', { exact: true }).fill('Lecture 1');
  await trainer.getByRole('button', { name: 'Create session' }).click();
  await trainer.getByRole('button', { name: 'Start the session' }).click();
  await trainer.locator('#session-state').filter({ hasText: 'Live' }).waitFor({ timeout: 10000 });

  await guest.getByRole('button', { name: 'Join as guest' }).click();
  await guest.getByRole('heading', { name: 'Open lecture' }).waitFor({ timeout: 10000 });
  await guest.getByText('Signed in as Gus (guest)').waitFor({ timeout: 10000 });
  assert.equal(await guest.locator('#my-role').textContent(), 'Student');
  await guest.getByRole('link', { name: 'Lecture 1' }).click();
  await guest.locator('#connection').filter({ hasText: 'Live updates on.' }).waitFor({ timeout: 15000 });

  const here = trainer.getByRole('list', { name: 'Who is here' });
  const gus = here.getByRole('listitem').filter({ hasText: 'Gus' });
  await gus.waitFor({ timeout: 10000 });
  assert.equal(await gus.getAttribute('data-activity'), 'active');

  await setVisibility(guest, 'hidden');
  await gus.filter({ hasText: 'Away' }).waitFor({ timeout: 10000 });
  await setVisibility(guest, 'visible');
  await here.getByRole('listitem').filter({ hasText: 'Gus' }).and(trainer.locator('[data-activity=active]')).waitFor({ timeout: 10000 });

  // The guest reloads: still signed in, still a guest.
  await guest.reload();
  await guest.getByText('Signed in as Gus (guest)').waitFor({ timeout: 10000 });
  await Promise.all([tctx.close(), gctx.close()]);
});
