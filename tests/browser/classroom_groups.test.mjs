// Breakout groups as a trainer and two students hold them in separate browsers: the
// trainer splits the class into two groups and each student sees their own; the
// trainer moves one student and both screens change at once; a broadcast and the
// timer reach both; a student who reloads lands on the same groups; in pick mode a
// student joins a group themselves; the trainer ends the breakouts.
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

const card = (page) => page.locator('section.groups-card');
const myGroup = (page) => page.locator('#my-group');
/** The name of the group the student's screen says is theirs. */
async function groupName(page) {
  const text = await myGroup(page).textContent();
  const m = /^Your group: (.+)$/.exec(text.trim());
  assert.ok(m, `"${text}" names a group`);
  return m[1];
}

test('breakouts: split, move live, broadcast, timer, reload, pick, end', async () => {
  const ctx = [await browser.newContext(), await browser.newContext(), await browser.newContext()];
  const [trainer, sam, lea] = await Promise.all(ctx.map((c) => c.newPage()));

  await signUp(trainer, 'Gail Trainer', 'gail.groups@example.org');
  await trainer.getByLabel('Course title', { exact: true }).fill('Biology');
  await trainer.getByRole('button', { name: 'Create course' }).click();
  await trainer.getByRole('heading', { name: 'Biology' }).waitFor({ timeout: 10000 });
  const link = (await trainer.locator('#join-link').getAttribute('href')).replace(/^https?:\/\/[^/]+/, '');
  await trainer.getByLabel('Session title', { exact: true }).fill('Lab 1');
  await trainer.getByRole('button', { name: 'Create session' }).click();
  await trainer.getByRole('button', { name: 'Start the session' }).click();
  await trainer.locator('#session-state').filter({ hasText: 'Live' }).waitFor({ timeout: 10000 });
  const sessionUrl = trainer.url().replace(/^https?:\/\/[^/]+/, '');

  for (const [p, name, email] of [[sam, 'Sam Student', 'sam.groups@example.org'], [lea, 'Lea Student', 'lea.groups@example.org']]) {
    await signUp(p, name, email, link);
    await p.getByRole('heading', { name: 'Biology' }).waitFor({ timeout: 10000 });
    await p.goto(`${server.url}${sessionUrl}`);
    await p.locator('#connection').filter({ hasText: 'Live updates on.' }).waitFor({ timeout: 15000 });
    await card(p).getByText('No breakout groups right now.').waitFor({ timeout: 10000 });
  }
  await trainer.locator('#connection').filter({ hasText: 'Live updates on.' }).waitFor({ timeout: 15000 });

  // Split into two groups: one student each, every screen says whose is whose.
  await trainer.getByText('Set up breakouts', { exact: true }).click();
  await trainer.getByLabel('Number of groups', { exact: true }).fill('2');
  await trainer.getByRole('button', { name: 'Split into 2 groups' }).click();
  await myGroup(sam).filter({ hasText: 'Your group: Group' }).waitFor({ timeout: 10000 });
  await myGroup(lea).filter({ hasText: 'Your group: Group' }).waitFor({ timeout: 10000 });
  const samFirst = await groupName(sam);
  const leaGroup = await groupName(lea);
  assert.notEqual(samFirst, leaGroup, 'two students, two groups: one each');
  await card(sam).locator('section.group.mine').getByText('Your group').waitFor();
  await trainer.getByRole('list', { name: `Members of ${samFirst}` }).getByText('Sam Student').waitFor({ timeout: 10000 });

  // The trainer moves Sam into Lea's group: both screens change at once.
  await trainer.getByLabel('Move Sam Student to', { exact: true }).selectOption({ label: leaGroup });
  await Promise.all([
    myGroup(sam).filter({ hasText: `Your group: ${leaGroup}` }).waitFor({ timeout: 10000 }),
    lea.getByRole('list', { name: `Members of ${leaGroup}` }).getByText('Sam Student').waitFor({ timeout: 10000 }),
  ]);
  await lea.getByText('With Sam Student.').waitFor({ timeout: 10000 });
  await sam.getByRole('list', { name: `Members of ${samFirst}` }).getByText('Nobody yet.').waitFor({ timeout: 10000 });

  // A broadcast reaches both, announced (role=status); the timer counts down on both.
  await trainer.getByLabel('Message to all groups', { exact: true }).fill('Wrap up: two minutes left');
  await trainer.getByRole('button', { name: 'Send to all groups' }).click();
  for (const p of [sam, lea]) {
    await p.getByRole('status', { name: 'Messages to all groups' }).getByText('Wrap up: two minutes left').waitFor({ timeout: 10000 });
  }
  await trainer.getByRole('button', { name: '+5 minutes' }).click();
  for (const p of [sam, lea]) {
    await p.getByRole('timer').filter({ hasText: /Ends in 0[45]:\d\d/ }).waitFor({ timeout: 10000 });
  }

  // Sam reloads: the same group, the broadcast, the timer.
  await sam.reload();
  await myGroup(sam).filter({ hasText: `Your group: ${leaGroup}` }).waitFor({ timeout: 10000 });
  await sam.getByRole('status', { name: 'Messages to all groups' }).getByText('Wrap up: two minutes left').waitFor({ timeout: 10000 });
  await sam.getByRole('timer').filter({ hasText: /Ends in 0[45]:\d\d/ }).waitFor({ timeout: 10000 });
  await sam.locator('#connection').filter({ hasText: 'Live updates on.' }).waitFor({ timeout: 15000 });
  assert.equal(await sam.getByRole('button', { name: /^Join / }).count(), 0, 'no picking in assigned mode');
  assert.equal(await sam.getByLabel(/^Move .* to$/).count(), 0, 'students move nobody');

  // Pick mode: Lea goes back to the empty group herself; the trainer's board follows.
  await trainer.getByLabel('Students pick their own group').check();
  await lea.getByRole('button', { name: `Join ${samFirst}` }).click();
  await myGroup(lea).filter({ hasText: `Your group: ${samFirst}` }).waitFor({ timeout: 10000 });
  await trainer.getByRole('list', { name: `Members of ${samFirst}` }).getByText('Lea Student').waitFor({ timeout: 10000 });

  // The trainer ends the breakouts: everyone back together.
  await trainer.getByRole('button', { name: 'End breakouts' }).click();
  for (const p of [sam, lea]) {
    await card(p).getByText('No breakout groups right now.').waitFor({ timeout: 10000 });
    assert.equal(await myGroup(p).count(), 0);
    assert.equal(await p.getByText('Wrap up: two minutes left').count(), 0, 'broadcasts go with the breakouts');
  }
  for (const c of ctx) await c.close();
});
