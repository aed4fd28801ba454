// Live polls and a quiz as a trainer and two students hold them in separate
// browsers: the trainer builds a single-choice poll and opens it, both students
// vote, the trainer watches the live chart while the students see no count, a
// student changes their vote, the trainer closes and shows the results and
// both students see them (also after a reload, with their own answer); then a
// quiz with a correct answer is scored: each student sees their own score, the
// trainer sees both on the leaderboard.
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
const poll = (page, question) => page.getByRole('list', { name: 'Polls' }).getByRole('listitem', { name: question });

async function build(trainer, { question, options, correct, timer }) {
  const details = trainer.locator('details.poll-new');
  if (!(await details.evaluate((d) => d.open))) await trainer.getByText('New poll', { exact: true }).click();
  await trainer.getByLabel('Poll type', { exact: true }).selectOption('single');
  await trainer.getByLabel('Poll question', { exact: true }).fill(question);
  for (let i = 2; i < options.length; i += 1) await trainer.getByRole('button', { name: 'Add an option' }).click();
  for (const [i, o] of options.entries()) await trainer.getByLabel(`Option ${i + 1}`, { exact: true }).fill(o);
  if (correct !== undefined) {
    await trainer.getByLabel('Quiz: mark the correct answer, score the students').check();
    await trainer.getByLabel(`Option ${correct + 1} is correct`, { exact: true }).check();
  }
  if (timer) await trainer.getByLabel('Timer in seconds (optional, 5 to 3600)').fill(String(timer));
  await trainer.getByRole('button', { name: 'Create and open' }).click();
  await poll(trainer, question).getByText('Open', { exact: true }).waitFor(T);
}

async function vote(page, question, option, change = false) {
  const card = poll(page, question);
  await card.getByRole('radio', { name: option, exact: true }).check();
  await card.getByRole('button', { name: change ? 'Change my answer' : 'Send my answer' }).click();
  await card.getByText(`Your answer: ${option}`).waitFor(T);
}

test('a poll and a quiz: vote, live chart, change, close, reveal, reload, scores', async () => {
  const ctx = [await browser.newContext(), await browser.newContext(), await browser.newContext()];
  const [trainer, sam, lea] = await Promise.all(ctx.map((c) => c.newPage()));
  for (const p of [trainer, sam, lea]) p.on('pageerror', (e) => console.error('page error:', e.message));

  await signUp(trainer, 'Paula Trainer', 'paula.polls@example.org');
  await trainer.getByLabel('Course title', { exact: true }).fill('Geography');
  await trainer.getByRole('button', { name: 'Create course' }).click();
  await trainer.getByRole('heading', { name: 'Geography' }).waitFor(T);
  const link = (await trainer.locator('#join-link').getAttribute('href')).replace(/^https?:\/\/[^/]+/, '');
  await trainer.getByLabel('Session title', { exact: true }).fill('Capitals');
  await trainer.getByRole('button', { name: 'Create session' }).click();
  await trainer.getByRole('button', { name: 'Start the session' }).click();
  await trainer.locator('#session-state').filter({ hasText: 'Live' }).waitFor(T);
  await trainer.locator('#connection').filter({ hasText: 'Live updates on.' }).waitFor({ timeout: 15000 });
  const sessionUrl = trainer.url().replace(/^https?:\/\/[^/]+/, '');

  for (const [p, name, email] of [[sam, 'Sam Polled', 'sam.polls@example.org'], [lea, 'Lea Polled', 'lea.polls@example.org']]) {
    await signUp(p, name, email, link);
    await p.getByRole('heading', { name: 'Geography' }).waitFor(T);
    await p.goto(`${server.url}${sessionUrl}`);
    await p.locator('#connection').filter({ hasText: 'Live updates on.' }).waitFor({ timeout: 15000 });
  }

  // The trainer builds a single-choice poll and opens it.
  const q = 'Capital of France?';
  await build(trainer, { question: q, options: ['Paris', 'Lyon', 'Nice'] });
  await poll(trainer, q).getByText('Paris: 0 (0 %)').waitFor(T);

  // Both students vote; the trainer's chart follows live.
  await poll(sam, q).waitFor(T);
  await vote(sam, q, 'Paris');
  await poll(lea, q).waitFor(T);
  await vote(lea, q, 'Lyon');
  await poll(trainer, q).getByText('Paris: 1 (50 %)').waitFor(T);
  await poll(trainer, q).getByText('Lyon: 1 (50 %)').waitFor(T);
  await poll(sam, q).getByText('2 answers so far. Results are hidden until the trainer shows them.').waitFor(T);
  assert.equal(await sam.getByText('Paris: 1').count(), 0, 'no count for the audience while hidden');

  // Lea changes her mind: the chart moves, nothing counts twice.
  await vote(lea, q, 'Paris', true);
  await poll(trainer, q).getByText('Paris: 2 (100 %)').waitFor(T);
  await poll(trainer, q).getByText('Lyon: 0 (0 %)').waitFor(T);

  // Closed and shown: both students see the results.
  await poll(trainer, q).getByRole('button', { name: 'Close', exact: true }).click();
  await poll(trainer, q).getByRole('button', { name: 'Show results' }).click();
  for (const p of [sam, lea]) {
    await poll(p, q).getByText('Paris: 2 (100 %)').waitFor(T);
    await poll(p, q).getByText('Closed', { exact: true }).waitFor(T);
    assert.equal(await poll(p, q).getByRole('button', { name: /my answer/ }).count(), 0, 'no more answers once closed');
  }
  await sam.reload();
  await poll(sam, q).getByText('Paris: 2 (100 %)').waitFor(T);
  await poll(sam, q).getByText('Your answer: Paris').waitFor(T);

  // A quiz: a correct answer is scored, faster scores more.
  const quiz = '2 + 2?';
  await build(trainer, { question: quiz, options: ['3', '4'], correct: 1, timer: 120 });
  await poll(sam, quiz).getByText(/Time left: \d+ s/).waitFor(T);
  await vote(sam, quiz, '4');
  await vote(lea, quiz, '3');
  await poll(trainer, quiz).getByText('4: 1 (50 %) ✓ correct').waitFor(T);
  assert.equal(await poll(sam, quiz).getByText('✓ correct').count(), 0, 'the correct answer stays hidden');
  await poll(trainer, quiz).getByRole('button', { name: 'Close', exact: true }).click();
  await poll(trainer, quiz).getByRole('button', { name: 'Show results' }).click();
  await poll(sam, quiz).getByText(/^Correct: \d+ points\.$/).waitFor(T);
  await poll(lea, quiz).getByText('Not correct: 0 points.').waitFor(T);
  const samScore = Number((await poll(sam, quiz).getByText(/^Correct: \d+ points\.$/).textContent()).match(/\d+/)[0]);
  assert.ok(samScore > 100 && samScore <= 200, `a fast right answer earns a bonus: ${samScore}`);
  await sam.getByText(`Your quiz score: ${samScore} points.`).waitFor(T);
  await lea.getByText('Your quiz score: 0 points.').waitFor(T);
  assert.equal(await sam.getByRole('list', { name: 'Leaderboard' }).count(), 0, 'students see their own score only');
  const board = trainer.getByRole('list', { name: 'Leaderboard' });
  await board.getByText(`Sam Polled: ${samScore} points (1 of 1 correct)`).waitFor(T);
  await board.getByText('Lea Polled: 0 points (0 of 1 correct)').waitFor(T);
  // A reload agrees with what was computed live.
  await lea.reload();
  await poll(lea, quiz).getByText('Not correct: 0 points.').waitFor(T);
  await sam.reload();
  await sam.getByText(`Your quiz score: ${samScore} points.`).waitFor(T);
  for (const c of ctx) await c.close();
});
