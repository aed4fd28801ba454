// The classroom's first pages as new users try them: a trainer signs up and
// creates a course, a student signs up and joins with the link, each sees what
// their role allows, and a reload keeps them signed in.
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

test('a trainer creates a course and a student joins it by link', async () => {
  const tctx = await browser.newContext();
  const sctx = await browser.newContext();
  const trainer = await tctx.newPage();
  const student = await sctx.newPage();

  await signUp(trainer, 'Tina Trainer', 'tina@example.org');
  await trainer.getByLabel('Course title', { exact: true }).fill('Chemistry 101');
  await trainer.getByRole('button', { name: 'Create course' }).click();
  await trainer.getByRole('heading', { name: 'Chemistry 101' }).waitFor({ timeout: 10000 });
  assert.equal(await trainer.locator('#my-role').textContent(), 'Trainer');
  const link = await trainer.locator('#join-link').getAttribute('href');
  assert.match(link, /\/#\/join\/.+/);

  // The student opens the link before having an account: sign up, then joined.
  await student.goto(link);
  await student.getByLabel('Your name', { exact: true }).fill('Sam Student');
  await student.getByLabel('Email address', { exact: true }).fill('sam@example.org');
  await student.getByLabel('Choose a password', { exact: true }).fill('another good password');
  await student.getByRole('button', { name: 'Create account' }).click();
  await student.getByRole('heading', { name: 'Chemistry 101' }).waitFor({ timeout: 10000 });
  assert.equal(await student.locator('#my-role').textContent(), 'Student');
  assert.equal(await student.locator('#join-code-value').count(), 0, 'students do not see the join code');
  assert.equal(await student.getByRole('combobox').count(), 0, 'students cannot change roles');

  // The trainer sees the student in the roster and promotes them.
  await trainer.reload();
  const roster = trainer.getByRole('table', { name: 'Roster' });
  await roster.getByText('Sam Student').waitFor({ timeout: 10000 });
  await trainer.getByLabel('Role of Sam Student').selectOption('co_trainer');
  await trainer.getByText('Sam Student is now co-trainer.').waitFor({ timeout: 10000 });

  // After a reload the student is still signed in, now a co-trainer who sees the code.
  await student.reload();
  await student.locator('#my-role').filter({ hasText: 'Co-trainer' }).waitFor({ timeout: 10000 });
  assert.equal(await student.locator('#join-code-value').count(), 1);

  // Signing out leads back to the sign-in form; a wrong password is refused with a message.
  await student.getByRole('button', { name: 'Sign out' }).click();
  await student.getByRole('heading', { name: 'Sign in' }).waitFor({ timeout: 10000 });
  await student.getByLabel('Email', { exact: true }).fill('sam@example.org');
  await student.getByLabel('Password', { exact: true }).fill('wrong password!');
  await student.getByRole('button', { name: 'Sign in' }).click();
  await student.locator('#status[data-kind=error]').waitFor({ timeout: 10000 });
  await student.getByLabel('Password', { exact: true }).fill('another good password');
  await student.getByRole('button', { name: 'Sign in' }).click();
  await student.getByText('Signed in as Sam Student').waitFor({ timeout: 10000 });
  await student.getByRole('list', { name: 'My courses' }).getByText('Chemistry 101').waitFor({ timeout: 10000 });

  await tctx.close();
  await sctx.close();
});
