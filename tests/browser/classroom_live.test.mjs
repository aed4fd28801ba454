// A live session as a trainer and two students hold it in separate browsers: the
// trainer starts it, a student raises a hand and the trainer sees it at once, a
// student who reloads or joins late lands on the same state, the trainer lowers
// the hand and ends the session, and every screen follows.
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

const hands = (page) => page.getByRole('list', { name: 'Raised hands' });

test('a live session: start, raise a hand, late joiner, lower, end', async () => {
  const ctx = [await browser.newContext(), await browser.newContext(), await browser.newContext()];
  const [trainer, sam, lea] = await Promise.all(ctx.map((c) => c.newPage()));

  await signUp(trainer, 'Tina Trainer', 'tina.live@example.org');
  await trainer.getByLabel('Course title', { exact: true }).fill('Physics');
  await trainer.getByRole('button', { name: 'Create course' }).click();
  await trainer.getByRole('heading', { name: 'Physics' }).waitFor({ timeout: 10000 });
  const link = await trainer.locator('#join-link').getAttribute('href');
  await trainer.getByLabel('Session title', { exact: true }).fill('Week 1');
  await trainer.getByRole('button', { name: 'Create session' }).click();
  await trainer.getByRole('heading', { name: 'Week 1' }).waitFor({ timeout: 10000 });
  await trainer.getByRole('button', { name: 'Start the session' }).click();
  await trainer.locator('#session-state').filter({ hasText: 'Live' }).waitFor({ timeout: 10000 });
  const sessionUrl = trainer.url().replace(/^https?:\/\/[^/]+/, '');

  // Sam joins the course by its link, opens the session and raises a hand.
  await signUp(sam, 'Sam Student', 'sam.live@example.org', link.replace(/^https?:\/\/[^/]+/, ''));
  await sam.getByRole('heading', { name: 'Physics' }).waitFor({ timeout: 10000 });
  await sam.getByRole('link', { name: 'Week 1' }).click();
  await sam.locator('#session-state').filter({ hasText: 'Live' }).waitFor({ timeout: 10000 });
  await sam.locator('#connection').filter({ hasText: 'Live updates on.' }).waitFor({ timeout: 15000 });
  await sam.getByRole('button', { name: 'Raise my hand' }).click();
  await hands(trainer).getByText('Sam Student').waitFor({ timeout: 10000 });
  await sam.getByRole('button', { name: 'Lower my hand' }).waitFor({ timeout: 10000 });

  // Lea joins late and sees the same state: live, Sam's hand up.
  await signUp(lea, 'Lea Late', 'lea.live@example.org', link.replace(/^https?:\/\/[^/]+/, ''));
  await lea.getByRole('heading', { name: 'Physics' }).waitFor({ timeout: 10000 });
  await lea.goto(`${server.url}${sessionUrl}`);
  await lea.locator('#session-state').filter({ hasText: 'Live' }).waitFor({ timeout: 10000 });
  await hands(lea).getByText('Sam Student').waitFor({ timeout: 10000 });
  await lea.locator('#connection').filter({ hasText: 'Live updates on.' }).waitFor({ timeout: 15000 });
  assert.equal(await lea.getByRole('button', { name: /Lower .*hand/ }).count(), 0, 'students cannot lower others');

  // The trainer lowers Sam's hand: every screen follows; Sam reloads and agrees.
  await trainer.getByRole('button', { name: "Lower Sam Student's hand" }).click();
  await hands(lea).getByText('No hand raised.').waitFor({ timeout: 10000 });
  await hands(sam).getByText('No hand raised.').waitFor({ timeout: 10000 });
  await sam.reload();
  await hands(sam).getByText('No hand raised.').waitFor({ timeout: 10000 });
  await sam.getByRole('button', { name: 'Raise my hand' }).waitFor({ timeout: 10000 });

  // The trainer ends it; the students see it ended and can no longer raise a hand.
  await trainer.getByRole('button', { name: 'End the session' }).click();
  for (const p of [sam, lea]) {
    await p.locator('#session-state').filter({ hasText: 'Ended' }).waitFor({ timeout: 10000 });
    assert.equal(await p.getByRole('button', { name: 'Raise my hand' }).count(), 0);
  }
  for (const c of ctx) await c.close();
});

test('questions: ask, upvote, answering now, a private answer only the asker sees', async () => {
  const ctx = [await browser.newContext(), await browser.newContext(), await browser.newContext()];
  const [trainer, sam, lea] = await Promise.all(ctx.map((c) => c.newPage()));
  await signUp(trainer, 'Quinn Trainer', 'quinn.qa@example.org');
  await trainer.getByLabel('Course title', { exact: true }).fill('Thermodynamics');
  await trainer.getByRole('button', { name: 'Create course' }).click();
  await trainer.getByRole('heading', { name: 'Thermodynamics' }).waitFor({ timeout: 10000 });
  const link = (await trainer.locator('#join-link').getAttribute('href')).replace(/^https?:\/\/[^/]+/, '');
  await trainer.getByLabel('Session title', { exact: true }).fill('Lecture 3');
  await trainer.getByRole('button', { name: 'Create session' }).click();
  await trainer.getByRole('button', { name: 'Start the session' }).click();
  await trainer.locator('#session-state').filter({ hasText: 'Live' }).waitFor({ timeout: 10000 });
  const sessionUrl = trainer.url().replace(/^https?:\/\/[^/]+/, '');

  for (const [p, name, email] of [[sam, 'Sam Asker', 'sam.qa@example.org'], [lea, 'Lea Voter', 'lea.qa@example.org']]) {
    await signUp(p, name, email, link);
    await p.getByRole('heading', { name: 'Thermodynamics' }).waitFor({ timeout: 10000 });
    await p.goto(`${server.url}${sessionUrl}`);
    await p.locator('#connection').filter({ hasText: 'Live updates on.' }).waitFor({ timeout: 15000 });
  }
  const questions = (p) => p.getByRole('list', { name: 'Questions' });

  await sam.getByLabel('Your question', { exact: true }).fill('What is entropy, really?');
  await sam.getByRole('button', { name: 'Ask', exact: true }).click();
  await questions(lea).getByText('What is entropy, really?').waitFor({ timeout: 10000 });
  await questions(sam).getByRole('button', { name: 'Edit my question' }).click();
  await questions(sam).getByLabel('Edit your question').fill('What is entropy, really? In one line.');
  await questions(sam).getByRole('button', { name: 'Save my question' }).click();
  await questions(lea).getByText('What is entropy, really? In one line.').waitFor({ timeout: 10000 });
  await questions(lea).getByRole('button', { name: 'Upvote' }).click();
  await questions(trainer).getByText('Sam Asker · 1 vote').waitFor({ timeout: 10000 });
  assert.equal(await questions(sam).getByRole('button', { name: 'Upvote' }).count(), 0, 'no vote on your own question');

  await questions(trainer).getByRole('button', { name: 'Answer now' }).click();
  for (const p of [sam, lea]) await questions(p).getByText('Answering now').waitFor({ timeout: 10000 });

  await questions(trainer).getByLabel('Answer to: What is entropy, really? In one line.').fill('A count of microstates, in log form.');
  await questions(trainer).getByRole('button', { name: 'Answer privately' }).click();
  await questions(sam).getByText('Private answer to you:').waitFor({ timeout: 10000 });
  await questions(sam).getByText('A count of microstates, in log form.').waitFor({ timeout: 10000 });
  await questions(lea).getByText('Answered privately.').waitFor({ timeout: 10000 });
  await lea.reload();
  await questions(lea).getByText('Answered privately.').waitFor({ timeout: 10000 });
  assert.equal(await lea.getByText('A count of microstates').count(), 0, 'the private answer never reaches another student');
  await sam.reload();
  await questions(sam).getByText('A count of microstates, in log form.').waitFor({ timeout: 10000 });

  // The trainer's queue filters by state.
  await trainer.getByLabel('Show questions').selectOption('starred');
  await questions(trainer).getByText('No question in this state.').waitFor({ timeout: 10000 });
  await trainer.getByLabel('Show questions').selectOption('answered');
  await questions(trainer).getByText('What is entropy, really? In one line.').waitFor({ timeout: 10000 });
  await trainer.getByLabel('Show questions').selectOption('all');

  // Moderation: a new question waits; the audience sees only how many are held back.
  await trainer.getByLabel('Hold new questions for moderation').check();
  await sam.getByLabel('Your question', { exact: true }).waitFor({ timeout: 10000 });
  await sam.getByLabel('Your question', { exact: true }).fill('Is this one held back?');
  await sam.getByRole('button', { name: 'Ask', exact: true }).click();
  await lea.getByText('1 question held back by moderation.').waitFor({ timeout: 10000 });
  assert.equal(await questions(lea).getByText('Is this one held back?').count(), 0, 'held back from the audience');
  await questions(sam).getByText('Is this one held back?').waitFor({ timeout: 10000 });
  const held = questions(trainer).getByRole('listitem').filter({ hasText: 'Is this one held back?' });
  await held.getByText('Held for moderation').waitFor({ timeout: 10000 });
  await held.getByRole('button', { name: 'Publish' }).click();
  await questions(lea).getByText('Is this one held back?').waitFor({ timeout: 10000 });
  assert.equal(await lea.getByText(/held back by moderation/).count(), 0);
  for (const c of ctx) await c.close();
});
