// A whole live lesson as new users would try it, each in their own browser: a new
// trainer signs up and starts the demo lesson (its deck on screen); two students
// join as guests by the course's join link and open the live session; the trainer
// turns to page 2, runs the poll "How is the pace?" (both vote, the trainer
// watches, then closes and shows the results); a student asks, the other upvotes,
// the trainer answers publicly; the trainer splits the class into two groups; a
// third student who joins late, and a student who reloads, land on exactly that
// state, and the trainer places the latecomer in a group; the trainer ends the
// session and every screen says so.
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

const T = { timeout: 10000 };
const LIVE = { timeout: 15000 };
const COURSE = 'Demo: a first live lesson';
const PACE = 'How is the pace?';
const QUESTION = 'Can a guest ask questions too?';
const ANSWER = 'Yes: guests are students like any other.';

const slide = (p) => p.getByRole('region', { name: /^Slide:/ });
const indicator = (p) => p.locator('#slide-indicator');
const poll = (p) => p.getByRole('list', { name: 'Polls' }).getByRole('listitem', { name: PACE });
const questions = (p) => p.getByRole('list', { name: 'Questions' });
const question = (p) => questions(p).getByRole('listitem').filter({ hasText: QUESTION });
const myGroup = (p) => p.locator('#my-group');
const connected = (p) => p.locator('#connection').filter({ hasText: 'Live updates on.' }).waitFor(LIVE);

/** A guest opens the join link in a fresh browser, joins by name, opens the live session. */
async function joinAsGuest(page, link, name) {
  await page.goto(link);
  await page.getByLabel('Name shown to others', { exact: true }).fill(name);
  await page.getByRole('button', { name: 'Join as guest' }).click();
  await page.getByRole('heading', { name: COURSE }).waitFor(T);
  await page.getByText(`Signed in as ${name} (guest)`).waitFor(T);
  await page.getByRole('link', { name: 'Demo lesson' }).click();
  await page.locator('#session-state').filter({ hasText: 'Live' }).waitFor(T);
  await connected(page);
}

/** What every student's screen must show once the lesson reached its full state. */
async function seesTheLesson(p, groupA, groupB) {
  await slide(p).getByRole('heading', { name: 'Questions' }).waitFor(T);
  await indicator(p).filter({ hasText: 'Page 2 of 6' }).waitFor(T);
  await poll(p).getByText('Closed', { exact: true }).waitFor(T);
  await poll(p).getByText('Too slow: 1 (50 %)').waitFor(T);
  await poll(p).getByText('Just right: 1 (50 %)').waitFor(T);
  await poll(p).getByText('Too fast: 0 (0 %)').waitFor(T);
  await question(p).getByText('Ada Guest · 1 vote · Answered').waitFor(T);
  await question(p).getByText(ANSWER).waitFor(T);
  await p.getByRole('list', { name: `Members of ${groupA}` }).getByText('Ada Guest').waitFor(T);
  await p.getByRole('list', { name: `Members of ${groupB}` }).getByText('Ben Guest').waitFor(T);
}

test('a whole live lesson: demo, guests, page, poll, Q&A, groups, late joiner, end', async () => {
  const ctx = [];
  for (let i = 0; i < 4; i += 1) ctx.push(await browser.newContext());
  const [trainer, ada, ben, cal] = await Promise.all(ctx.map((c) => c.newPage()));
  const errors = [];
  for (const p of [trainer, ada, ben, cal]) p.on('pageerror', (e) => errors.push(e.message));

  // 1. A new trainer signs up; the first page offers the demo lesson.
  await trainer.goto(`${server.url}/`);
  await trainer.getByLabel('Your name', { exact: true }).fill('Tessa Trainer');
  await trainer.getByLabel('Email address', { exact: true }).fill('tessa.lesson@example.org');
  await trainer.getByLabel('Choose a password', { exact: true }).fill('correct horse battery');
  await trainer.getByRole('button', { name: 'Create account' }).click();
  await trainer.getByText('Signed in as Tessa Trainer').waitFor(T);
  await trainer.getByRole('heading', { name: 'New here? Try a demo lesson' }).waitFor(T);
  await trainer.getByRole('button', { name: 'Start a demo lesson' }).click();
  await trainer.getByRole('heading', { name: 'Demo lesson' }).waitFor(T);
  await trainer.locator('#session-state').filter({ hasText: 'Live' }).waitFor(T);
  await slide(trainer).getByRole('heading', { name: "Welcome to Herald's live classroom" }).waitFor(T);
  await slide(trainer).getByText('everything you do here reaches every screen at once').waitFor(T);
  await indicator(trainer).filter({ hasText: 'Page 1 of 6' }).waitFor(T);
  await poll(trainer).getByText('Draft', { exact: true }).waitFor(T);
  const sessionUrl = trainer.url();

  // 2. The course page shows the join link; two students join by it as guests.
  await trainer.getByRole('link', { name: '← Back to the course' }).click();
  await trainer.getByRole('heading', { name: COURSE }).waitFor(T);
  const link = await trainer.locator('#join-link').getAttribute('href');
  assert.match(link, /\/#\/join\/\w+/);
  assert.equal(await trainer.getByLabel('Let guests join live sessions by name').isChecked(), true, 'the demo lets guests in');
  await trainer.goto(sessionUrl);
  await connected(trainer);
  // The session page invites with the same link.
  await trainer.locator('#session-join-link').waitFor(T);
  assert.equal(await trainer.locator('#session-join-link').getAttribute('href'), link);

  await Promise.all([joinAsGuest(ada, link, 'Ada Guest'), joinAsGuest(ben, link, 'Ben Guest')]);
  for (const p of [ada, ben]) {
    await slide(p).getByRole('heading', { name: "Welcome to Herald's live classroom" }).waitFor(T);
    await indicator(p).filter({ hasText: 'Page 1 of 6' }).waitFor(T);
    assert.equal(await p.getByRole('button', { name: 'Next page' }).isVisible(), false, 'students follow the trainer');
  }
  const here = trainer.getByRole('list', { name: 'Who is here' });
  await here.getByText('Ada Guest').waitFor(T);
  await here.getByText('Ben Guest').waitFor(T);

  // 3. Page 2 on every screen.
  await trainer.getByRole('button', { name: 'Next page' }).click();
  for (const p of [trainer, ada, ben]) {
    await slide(p).getByRole('heading', { name: 'Questions' }).waitFor(T);
    await indicator(p).filter({ hasText: 'Page 2 of 6' }).waitFor(T);
  }

  // The poll: the trainer opens it, both vote, the trainer watches the live chart.
  await poll(trainer).getByRole('button', { name: 'Open', exact: true }).click();
  await poll(trainer).getByRole('button', { name: 'Close', exact: true }).waitFor(T);
  await poll(trainer).getByText('Results hidden from students').waitFor(T);
  for (const [p, choice] of [[ada, 'Too slow'], [ben, 'Just right']]) {
    await poll(p).getByRole('radio', { name: choice, exact: true }).check();
    await poll(p).getByRole('button', { name: 'Send my answer' }).click();
    await poll(p).getByText(`Your answer: ${choice}`).waitFor(T);
  }
  await poll(trainer).getByText('Too slow: 1 (50 %)').waitFor(T);
  await poll(trainer).getByText('Just right: 1 (50 %)').waitFor(T);
  await poll(trainer).getByText('Too fast: 0 (0 %)').waitFor(T);
  for (const p of [ada, ben]) {
    await poll(p).getByText('2 answers so far. Results are hidden until the trainer shows them.').waitFor(T);
    assert.equal(await poll(p).getByText('Too slow: 1').count(), 0, 'no tally for students while hidden');
  }
  // Closed and shown: both students see the results, and can no longer answer.
  await poll(trainer).getByRole('button', { name: 'Close', exact: true }).click();
  await poll(trainer).getByRole('button', { name: 'Show results' }).click();
  await poll(trainer).getByText('Results shown to everyone').waitFor(T);
  for (const p of [ada, ben]) {
    await poll(p).getByText('Closed', { exact: true }).waitFor(T);
    await poll(p).getByText('Too slow: 1 (50 %)').waitFor(T);
    await poll(p).getByText('Just right: 1 (50 %)').waitFor(T);
    assert.equal(await poll(p).getByRole('button', { name: /my answer/ }).count(), 0, 'no answers once closed');
  }

  // 4. Ada asks, Ben upvotes, the trainer answers now, publicly.
  await ada.getByLabel('Your question', { exact: true }).fill(QUESTION);
  await ada.getByRole('button', { name: 'Ask', exact: true }).click();
  await question(ben).waitFor(T);
  await question(ben).getByRole('button', { name: 'Upvote' }).click();
  await question(ben).getByRole('button', { name: 'Remove my vote' }).waitFor(T);
  await question(trainer).getByText('Ada Guest · 1 vote').waitFor(T);
  await question(trainer).getByRole('button', { name: 'Answer now' }).click();
  for (const p of [ada, ben]) await question(p).getByText('Answering now').waitFor(T);
  await question(trainer).getByLabel(`Answer to: ${QUESTION}`).fill(ANSWER);
  await question(trainer).getByRole('button', { name: 'Answer publicly' }).click();
  for (const p of [trainer, ada, ben]) {
    await question(p).getByText('Ada Guest · 1 vote · Answered').waitFor(T);
    await question(p).getByText(ANSWER).waitFor(T);
  }

  // 5. Two groups: one student each, each sees their own.
  await trainer.getByText('Set up breakouts', { exact: true }).click();
  await trainer.getByLabel('Number of groups', { exact: true }).fill('2');
  await trainer.getByRole('button', { name: 'Split into 2 groups' }).click();
  for (const p of [ada, ben]) await myGroup(p).filter({ hasText: /^Your group: Group \d$/ }).waitFor(T);
  const adaGroup = (await myGroup(ada).textContent()).replace('Your group: ', '');
  const benGroup = (await myGroup(ben).textContent()).replace('Your group: ', '');
  assert.notEqual(adaGroup, benGroup, 'two students, two groups: one each');
  await ada.getByText('With nobody else yet.').waitFor(T);
  await trainer.getByRole('list', { name: `Members of ${adaGroup}` }).getByText('Ada Guest').waitFor(T);
  await trainer.getByRole('list', { name: `Members of ${benGroup}` }).getByText('Ben Guest').waitFor(T);

  // 6. Cal joins late and lands on the same state; Ada reloads and does too.
  await joinAsGuest(cal, link, 'Cal Late');
  await seesTheLesson(cal, adaGroup, benGroup);
  await myGroup(cal).filter({ hasText: 'You are not in a group yet.' }).waitFor(T);
  assert.equal(await poll(cal).getByRole('button', { name: /my answer/ }).count(), 0, 'a closed poll takes no answer');
  // Answered: no more votes (the server refuses them), so no Upvote to offer.
  assert.equal(await question(cal).getByRole('button', { name: 'Upvote' }).count(), 0, 'no vote on an answered question');
  await here.getByText('Cal Late').waitFor(T);
  // The trainer sees the latecomer among the students not in a group, ready to be placed.
  await trainer.getByRole('list', { name: 'Students not in a group' }).getByText('Cal Late').waitFor(T);

  await ada.reload();
  await connected(ada);
  await seesTheLesson(ada, adaGroup, benGroup);
  await poll(ada).getByText('Your answer: Too slow').waitFor(T);
  await myGroup(ada).filter({ hasText: `Your group: ${adaGroup}` }).waitFor(T);
  assert.equal(await question(ada).getByRole('button', { name: 'Upvote' }).count(), 0, 'no vote on your own question');
  // Ben, who never reloaded, still agrees.
  await seesTheLesson(ben, adaGroup, benGroup);
  await question(ben).getByRole('button', { name: 'Remove my vote' }).waitFor(T);

  // The trainer places the latecomer in Ada's group: both screens follow.
  await trainer.getByLabel('Move Cal Late to', { exact: true }).selectOption({ label: adaGroup });
  await myGroup(cal).filter({ hasText: `Your group: ${adaGroup}` }).waitFor(T);
  await ada.getByText('With Cal Late.').waitFor(T);
  await trainer.getByRole('list', { name: 'Students not in a group' }).waitFor({ state: 'detached', timeout: 10000 });

  // 7. The trainer ends the session: every screen says so; nothing more to do there.
  await trainer.getByRole('button', { name: 'End the session' }).click();
  for (const p of [trainer, ada, ben, cal]) {
    await p.locator('#session-state').filter({ hasText: 'Ended' }).waitFor(T);
  }
  await trainer.getByRole('button', { name: 'End the session' }).waitFor({ state: 'detached', timeout: 10000 });
  assert.equal(await trainer.getByRole('button', { name: 'Next page' }).isDisabled(), true, 'no page flips once ended');
  for (const p of [ada, ben, cal]) {
    await p.getByText('The session has ended; these were its groups.').waitFor(T);
    assert.equal(await p.getByRole('button', { name: 'Raise my hand' }).count(), 0);
    assert.equal(await p.getByLabel('Your question', { exact: true }).count(), 0, 'no questions once ended');
    assert.equal(await p.getByRole('button', { name: 'Upvote' }).count(), 0, 'no votes once ended');
  }
  assert.deepEqual(errors, [], 'no script error on any page');
  for (const c of ctx) await c.close();
});
