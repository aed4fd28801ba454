// Slides in a live session, a trainer and two students in separate browsers:
// the trainer writes a Markdown deck and shows it, both students see page 1;
// the trainer flips to page 2 and both follow; a student who reloads lands on
// page 2; in free mode a student browses back, sees where the trainer is, and
// comes back with "Back to the trainer's page".
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, startHerald, signUp as harnessSignUp } from './harness.mjs';

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

const signUp = (...args) => harnessSignUp(server, ...args);

const DECK = `# Welcome

Today: **forces**. <script>window.pwned = true</script>

## Newton's laws

1. Inertia
2. F = m a

---

Third slide, without a heading.
`;

const slide = (page) => page.getByRole('region', { name: /^Slide:/ });
const indicator = (page) => page.locator('#slide-indicator');

test('slides: show a deck, flip pages, reload, free browsing and back', async () => {
  const ctx = [await browser.newContext(), await browser.newContext(), await browser.newContext()];
  const [trainer, sam, lea] = await Promise.all(ctx.map((c) => c.newPage()));

  await signUp(trainer, 'Tina Slides', 'tina.slides@example.org');
  await trainer.getByLabel('Course title', { exact: true }).fill('Mechanics');
  await trainer.getByRole('button', { name: 'Create course' }).click();
  await trainer.getByRole('heading', { name: 'Mechanics' }).waitFor({ timeout: 10000 });
  const link = (await trainer.locator('#join-link').getAttribute('href')).replace(/^https?:\/\/[^/]+/, '');
  await trainer.getByLabel('Session title', { exact: true }).fill('Lesson 1');
  await trainer.getByRole('button', { name: 'Create session' }).click();
  await trainer.getByRole('button', { name: 'Start the session' }).click();
  await trainer.locator('#session-state').filter({ hasText: 'Live' }).waitFor({ timeout: 10000 });
  const sessionUrl = trainer.url().replace(/^https?:\/\/[^/]+/, '');

  for (const [p, name, email] of [[sam, 'Sam Slides', 'sam.slides@example.org'], [lea, 'Lea Slides', 'lea.slides@example.org']]) {
    await signUp(p, name, email, link);
    await p.getByRole('heading', { name: 'Mechanics' }).waitFor({ timeout: 10000 });
    await p.goto(`${server.url}${sessionUrl}`);
    await p.locator('#connection').filter({ hasText: 'Live updates on.' }).waitFor({ timeout: 15000 });
    await p.getByText('No slides on screen yet.').waitFor({ timeout: 10000 });
  }

  // The trainer writes a deck and shows it.
  await trainer.getByText('New deck').click();
  await trainer.getByLabel('Deck title', { exact: true }).fill('Forces');
  await trainer.getByLabel('Markdown', { exact: true }).fill(DECK);
  await trainer.getByRole('button', { name: 'Create the deck' }).click();
  await trainer.getByLabel('Deck to show').filter({ hasText: 'Forces (3 slides)' }).waitFor({ timeout: 10000 });
  await trainer.getByRole('button', { name: 'Show this deck' }).click();
  for (const p of [trainer, sam, lea]) {
    await slide(p).getByRole('heading', { name: 'Welcome' }).waitFor({ timeout: 10000 });
    await indicator(p).filter({ hasText: 'Page 1 of 3' }).waitFor({ timeout: 10000 });
  }
  // Raw HTML in the Markdown is shown as text, never run.
  await slide(sam).getByText('<script>window.pwned = true</script>').waitFor({ timeout: 10000 });
  assert.equal(await sam.evaluate(() => window.pwned), undefined);
  // Teacher-paced by default: students have no page buttons of their own.
  assert.equal(await sam.getByRole('button', { name: 'Next page' }).isVisible(), false);

  // The trainer flips with the keyboard on the slide: everyone follows.
  await slide(trainer).focus();
  await trainer.keyboard.press('ArrowRight');
  for (const p of [trainer, sam, lea]) {
    await slide(p).getByRole('heading', { name: "Newton's laws" }).waitFor({ timeout: 10000 });
    await indicator(p).filter({ hasText: 'Page 2 of 3' }).waitFor({ timeout: 10000 });
  }

  // A student who reloads lands on page 2.
  await sam.reload();
  await slide(sam).getByRole('heading', { name: "Newton's laws" }).waitFor({ timeout: 10000 });
  await indicator(sam).filter({ hasText: 'Page 2 of 3' }).waitFor({ timeout: 10000 });
  await sam.locator('#connection').filter({ hasText: 'Live updates on.' }).waitFor({ timeout: 15000 });

  // Free browsing: Lea goes back a page, sees where the trainer is, then follows again.
  await trainer.getByLabel('Who sets the pace').selectOption('free');
  await lea.getByRole('button', { name: 'Previous page' }).waitFor({ timeout: 10000 });
  await lea.getByRole('button', { name: 'Previous page' }).click();
  await slide(lea).getByRole('heading', { name: 'Welcome' }).waitFor({ timeout: 10000 });
  await lea.locator('#slide-notice').filter({ hasText: 'The trainer is on page 2.' }).waitFor({ timeout: 10000 });
  // The trainer moves on; Lea stays where she is, and is told.
  await trainer.getByRole('button', { name: 'Next page' }).click();
  await indicator(sam).filter({ hasText: 'Page 3 of 3' }).waitFor({ timeout: 10000 });
  await slide(sam).getByText('Third slide, without a heading.').waitFor({ timeout: 10000 });
  await lea.locator('#slide-notice').filter({ hasText: 'The trainer is on page 3.' }).waitFor({ timeout: 10000 });
  await indicator(lea).filter({ hasText: 'Page 1 of 3' }).waitFor({ timeout: 10000 });
  await lea.getByRole('button', { name: "Back to the trainer's page" }).click();
  await slide(lea).getByText('Third slide, without a heading.').waitFor({ timeout: 10000 });
  await indicator(lea).filter({ hasText: 'Page 3 of 3' }).waitFor({ timeout: 10000 });
  assert.equal(await lea.getByRole('button', { name: "Back to the trainer's page" }).isVisible(), false);

  // Back to trainer-paced: Lea's own buttons go, she follows the trainer again.
  await trainer.getByLabel('Who sets the pace').selectOption('teacher');
  await lea.getByRole('button', { name: 'Previous page' }).waitFor({ state: 'hidden', timeout: 10000 });
  await trainer.getByRole('button', { name: 'Previous page' }).click();
  await indicator(lea).filter({ hasText: 'Page 2 of 3' }).waitFor({ timeout: 10000 });
  for (const c of ctx) await c.close();
});
