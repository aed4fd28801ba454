// People's texts cannot break the page: a 500-character word wraps inside its
// card on a phone; a name with a right-to-left override is refused with its
// reason, and a right-to-left name does not carry the words after it into its
// own direction; every page runs under its Content-Security-Policy (no inline
// script) without a violation.
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
const T = { timeout: 10000 };
const PHONE = { viewport: { width: 412, height: 915 } };

/** A page that records every Content-Security-Policy violation. */
async function watchedPage(context) {
  const page = await context.newPage();
  page.violations = [];
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) page.violations.push(m.text()); });
  return page;
}

/** How far the page is wider than the screen (0 when it fits). */
const overflow = (page) => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);

test('a 500-character word wraps in its card on a phone, under the pages\' policy', async () => {
  const tctx = await browser.newContext(PHONE);
  const sctx = await browser.newContext(PHONE);
  const trainer = await watchedPage(tctx);
  const student = await watchedPage(sctx);
  const longTitle = `Pneumonoultramicroscopic${'o'.repeat(96)}`; // 120 characters, one word
  const longWord = `Supercalifragilistic${'x'.repeat(480)}`; // 500 characters, one word

  await signUp(trainer, 'Tina Trainer', 'tina.texts@example.org');
  await trainer.getByLabel('Course title', { exact: true }).fill(longTitle);
  await trainer.getByRole('button', { name: 'Create course' }).click();
  await trainer.getByRole('heading', { name: longTitle }).waitFor(T);
  assert.equal(await overflow(trainer), 0, 'the course page fits the phone');
  const link = (await trainer.locator('#join-link').getAttribute('href')).replace(/^https?:\/\/[^/]+/, '');
  await trainer.getByLabel('Session title', { exact: true }).fill(longTitle);
  await trainer.getByRole('button', { name: 'Create session' }).click();
  await trainer.getByRole('button', { name: 'Start the session' }).click();
  await trainer.locator('#session-state').filter({ hasText: 'Live' }).waitFor(T);
  const sessionUrl = trainer.url().replace(/^https?:\/\/[^/]+/, '');

  await signUp(student, 'Sam Student', 'sam.texts@example.org', link);
  await student.getByRole('heading', { name: longTitle }).waitFor(T);
  await student.goto(`${server.url}${sessionUrl}`);
  await student.locator('#connection').filter({ hasText: 'Live updates on.' }).waitFor({ timeout: 15000 });
  await student.getByLabel('Your question', { exact: true }).fill(longWord);
  await student.getByRole('button', { name: 'Ask', exact: true }).click();
  const questions = (p) => p.getByRole('list', { name: 'Questions' });
  await questions(trainer).getByText(longWord).waitFor(T);
  await questions(student).getByText(longWord).waitFor(T);
  for (const p of [trainer, student]) {
    assert.equal(await overflow(p), 0, `the session page fits the phone (${p === trainer ? 'trainer' : 'student'})`);
  }
  // The other pages, under the same policy.
  for (const path of ['/developers', '/']) {
    await student.goto(`${server.url}${path}`);
    await student.waitForLoadState('networkidle');
  }
  await student.getByText('Signed in as Sam Student').waitFor(T);
  assert.deepEqual([...trainer.violations, ...student.violations], [], 'no policy violation');
  await tctx.close();
  await sctx.close();
});

/**
 * Where `a` and then `b` (the first occurrences, in the text of `box`) are
 * drawn: `{ a: [left, right], b: [left, right] }` in pixels.
 */
const drawn = (box, a, b) => box.evaluate((el, [a, b]) => {
  const spot = (want) => {
    const walk = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      const at = n.data.indexOf(want);
      if (at < 0) continue;
      const r = document.createRange();
      r.setStart(n, at);
      r.setEnd(n, at + want.length);
      const { left, right } = r.getBoundingClientRect();
      return [left, right];
    }
    throw new Error(`no "${want}" in "${el.textContent}"`);
  };
  return { a: spot(a), b: spot(b) };
}, [a, b]);

test('a name that reorders text is refused; a right-to-left name leaves the words after it in place', async () => {
  const tctx = await browser.newContext(PHONE);
  const sctx = await browser.newContext(PHONE);
  const trainer = await watchedPage(tctx);
  const student = await watchedPage(sctx);
  await signUp(trainer, 'Tara Trainer', 'tara.bidi@example.org');
  await trainer.getByLabel('Course title', { exact: true }).fill('Bidi');
  await trainer.getByRole('button', { name: 'Create course' }).click();
  await trainer.getByRole('heading', { name: 'Bidi' }).waitFor(T);
  const link = (await trainer.locator('#join-link').getAttribute('href')).replace(/^https?:\/\/[^/]+/, '');
  await trainer.getByLabel('Session title', { exact: true }).fill('Names');
  await trainer.getByRole('button', { name: 'Create session' }).click();
  await trainer.getByRole('button', { name: 'Start the session' }).click();
  await trainer.locator('#session-state').filter({ hasText: 'Live' }).waitFor(T);
  const sessionUrl = trainer.url().replace(/^https?:\/\/[^/]+/, '');

  // "Eve" + RIGHT-TO-LEFT OVERRIDE + "gnp.exe" would show as "Eveexe.png" to everyone else.
  await student.goto(`${server.url}${link}`);
  await student.getByLabel('Your name', { exact: true }).fill('Eve\u202Egnp.exe');
  await student.getByLabel('Email address', { exact: true }).fill('eve.bidi@example.org');
  await student.getByLabel('Choose a password', { exact: true }).fill('correct horse battery');
  await student.getByRole('button', { name: 'Create account' }).click();
  await student.locator('#status[data-kind=error]').filter({ hasText: 'change the direction' }).waitFor(T);
  assert.equal(await student.getByText('Signed in as').count(), 0, 'not signed in');

  // A right-to-left name is welcome, and stays inside its own box.
  const aisha = 'عائشة';
  await signUp(student, aisha, 'aisha.bidi@example.org', link);
  await student.getByRole('heading', { name: 'Bidi' }).waitFor(T);
  await student.goto(`${server.url}${sessionUrl}`);
  await student.locator('#connection').filter({ hasText: 'Live updates on.' }).waitFor({ timeout: 15000 });
  await student.getByLabel('Your question', { exact: true }).fill('Why?');
  await student.getByRole('button', { name: 'Ask', exact: true }).click();
  const meta = trainer.getByRole('list', { name: 'Questions' }).getByText(`${aisha} · 0 votes`);
  await meta.waitFor(T);
  const at = await drawn(meta, aisha, '0 votes');
  assert.ok(at.b[0] >= at.a[1] - 0.5, `the vote count is drawn after the name, not before it: ${JSON.stringify(at)}`);
  assert.deepEqual([...trainer.violations, ...student.violations], [], 'no policy violation');
  await tctx.close();
  await sctx.close();
});
