// The session console as people use it while the room is busy, each in their own
// browser: what a trainer or a student is typing survives the events that keep
// arriving (students asking, voting, answering polls, picking groups), with its
// focus and caret; status lines follow the state; staff see the private answers
// they gave; used forms close and the console stays within a laptop's reach;
// "Who is here" is in sight; answered questions take no votes; the slide
// controls fit a phone.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, startHerald, until } from './harness.mjs';

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
const LAPTOP = { width: 1366, height: 768 };
const PHONE = { width: 412, height: 915 };
const PACE = 'How is the pace?';

const questions = (p) => p.getByRole('list', { name: 'Questions' });
const question = (p, text) => questions(p).getByRole('listitem').filter({ hasText: text });
const poll = (p, text) => p.getByRole('list', { name: 'Polls' }).getByRole('listitem', { name: text });
const status = (p) => p.locator('#status');

/** Calls the classroom API from the page, as its own user (cookie and CSRF token). */
const api = (p, method, path, body) => p.evaluate(async ([m, pa, b]) => {
  const { call } = await import('/classroom/api.js');
  return call(m, pa, b);
}, [method, path, body]);

/** The focused element: its name, value, caret and selection. */
const focused = (p) => p.evaluate(() => {
  const e = document.activeElement;
  return {
    name: e.getAttribute('aria-label') || (e.labels && e.labels[0] ? e.labels[0].textContent.trim() : e.id),
    value: e.value,
    start: e.selectionStart,
    end: e.selectionEnd,
  };
});

let users = 0;

/**
 * A demo lesson (deck on screen, a poll and a quiz ready) held by a new trainer,
 * with students who joined as guests by the course's link, each in their own
 * browser. Returns the pages, the session id and a way to close them.
 */
async function lesson({ students = ['Ada Guest', 'Ben Guest'], viewport = LAPTOP, studentViewport = viewport } = {}) {
  users += 1;
  const contexts = [];
  const errors = [];
  const open = async (vp) => {
    const c = await browser.newContext({ viewport: vp });
    contexts.push(c);
    const p = await c.newPage();
    p.on('pageerror', (e) => errors.push(e.message));
    return p;
  };
  const trainer = await open(viewport);
  await trainer.goto(`${server.url}/`);
  await trainer.getByLabel('Your name', { exact: true }).fill('Tessa Trainer');
  await trainer.getByLabel('Email address', { exact: true }).fill(`tessa.console${users}@example.org`);
  await trainer.getByLabel('Choose a password', { exact: true }).fill('correct horse battery');
  await trainer.getByRole('button', { name: 'Create account' }).click();
  await trainer.getByRole('button', { name: 'Start a demo lesson' }).click();
  await trainer.locator('#session-state').filter({ hasText: 'Live' }).waitFor(T);
  await trainer.locator('#session-join-link').waitFor(T);
  await trainer.locator('#connection').filter({ hasText: 'Live updates on.' }).waitFor(T);
  const link = await trainer.locator('#session-join-link').getAttribute('href');
  const sid = decodeURIComponent(trainer.url().split('#/session/')[1]);
  const pages = [];
  for (const name of students) {
    const p = await open(studentViewport);
    await p.goto(link);
    await p.getByLabel('Name shown to others', { exact: true }).fill(name);
    await p.getByRole('button', { name: 'Join as guest' }).click();
    await p.locator('#status').filter({ hasText: 'You joined' }).waitFor(T);
    await p.getByRole('link', { name: 'Demo lesson' }).click();
    await p.locator('#connection').filter({ hasText: 'Live updates on.' }).waitFor(T);
    pages.push(p);
  }
  for (const name of students) await trainer.getByRole('list', { name: 'Who is here' }).getByText(name).waitFor(T);
  const close = async () => {
    await Promise.all(contexts.map((c) => c.close()));
    assert.deepEqual(errors, [], 'no script error on any page');
  };
  return { trainer, students: pages, sid, link, close };
}

/** The ids of things in the session, as the trainer's snapshot has them. */
async function ids(trainer, sid) {
  const { snapshot } = await api(trainer, 'GET', `sessions/${encodeURIComponent(sid)}`);
  const byText = (all, field) => Object.fromEntries(Object.values(all || {}).map((x) => [x[field], x.id]));
  return {
    polls: byText(snapshot.polls, 'question'),
    questions: byText({ ...snapshot.pending, ...snapshot.questions }, 'text'),
    groups: Object.fromEntries(((snapshot.groups || {}).groups || []).map((g) => [g.name, g.id])),
  };
}

test('typing survives ten incoming events: text, focus and caret; the answer sent is the one typed', async () => {
  const { trainer, students: [ada, ben], sid, close } = await lesson();
  const s = `sessions/${encodeURIComponent(sid)}`;
  const Q_ADA = 'Why does the demo use guests?';
  const Q_BEN = 'Is the deck shared afterwards?';
  await api(ada, 'POST', `${s}/questions`, { text: Q_ADA });
  // Ben asks on his page, which then knows the question is his.
  await ben.getByLabel('Your question', { exact: true }).fill(Q_BEN);
  await ben.getByRole('button', { name: 'Ask', exact: true }).click();
  await question(trainer, Q_ADA).waitFor(T);
  await question(trainer, Q_BEN).waitFor(T);
  await question(ben, Q_BEN).waitFor(T);
  // The trainer opens the pace poll and groups students pick themselves.
  await poll(trainer, PACE).getByRole('button', { name: 'Open', exact: true }).click();
  await poll(trainer, PACE).getByRole('button', { name: 'Close', exact: true }).waitFor(T);
  await trainer.getByText('Set up breakouts', { exact: true }).click();
  await trainer.getByRole('button', { name: 'Open 2 groups to pick' }).click();
  await trainer.getByRole('list', { name: 'Members of Group 2' }).waitFor(T);
  const id = await ids(trainer, sid);
  const pace = id.polls[PACE];

  // The trainer fills the new poll form and the broadcast box, then types an
  // answer and puts the caret back three characters.
  await trainer.getByText('New poll', { exact: true }).click();
  await trainer.getByLabel('Poll question', { exact: true }).fill('Which topic next?');
  await trainer.getByLabel('Option 1', { exact: true }).fill('Groups');
  await trainer.getByLabel('Option 2', { exact: true }).fill('Quizzes');
  await trainer.getByLabel('Message to all groups', { exact: true }).fill('Five minutes left');
  const answerBox = question(trainer, Q_ADA).getByLabel(`Answer to: ${Q_ADA}`);
  await answerBox.click();
  await answerBox.pressSequentially('Because they need account');
  for (let i = 0; i < 7; i += 1) await trainer.keyboard.press('ArrowLeft');
  const typed = { name: `Answer to: ${Q_ADA}`, value: 'Because they need account', start: 18, end: 18 };
  assert.deepEqual(await focused(trainer), typed);
  // A student is editing their question, with a word selected; another is
  // typing a new question.
  await question(ben, Q_BEN).getByRole('button', { name: 'Edit my question' }).click();
  const editBox = ben.getByLabel('Edit your question');
  await editBox.press('End');
  await editBox.pressSequentially(' Or only');
  for (let i = 0; i < 4; i += 1) await ben.keyboard.press('Shift+ArrowLeft');
  const editing = { name: 'Edit your question', value: `${Q_BEN} Or only`, start: Q_BEN.length + 4, end: Q_BEN.length + 8 };
  assert.deepEqual(await focused(ben), editing);
  await ada.getByLabel('Your question', { exact: true }).pressSequentially('How long is the ');
  const asking = { name: 'Your question', value: 'How long is the ', start: 16, end: 16 };
  assert.deepEqual(await focused(ada), asking);

  // Ten events, each seen on the trainer's screen before the next.
  const events = [
    [() => api(ada, 'POST', `${s}/questions`, { text: 'Extra one?' }), () => question(trainer, 'Extra one?').waitFor(T)],
    [() => api(ben, 'POST', `${s}/questions/${id.questions[Q_ADA]}/vote`, {}), () => question(trainer, Q_ADA).getByText('Ada Guest · 1 vote').waitFor(T)],
    [() => api(ada, 'POST', `${s}/questions/${id.questions[Q_BEN]}/vote`, {}), () => question(trainer, Q_BEN).getByText('Ben Guest · 1 vote').waitFor(T)],
    [() => api(ada, 'POST', `${s}/polls/${pace}/answer`, { answer: 0 }), () => poll(trainer, PACE).getByText('Too slow: 1 (100 %)').waitFor(T)],
    [() => api(ben, 'POST', `${s}/polls/${pace}/answer`, { answer: 1 }), () => poll(trainer, PACE).getByText('Just right: 1 (50 %)').waitFor(T)],
    [() => api(ben, 'POST', `${s}/questions`, { text: 'Extra two?' }), () => question(trainer, 'Extra two?').waitFor(T)],
    [() => api(ada, 'POST', `${s}/polls/${pace}/answer`, { answer: 2 }), () => poll(trainer, PACE).getByText('Too fast: 1 (50 %)').waitFor(T)],
    [async () => api(ada, 'POST', `${s}/questions/${(await ids(trainer, sid)).questions['Extra two?']}/vote`, {}), () => question(trainer, 'Extra two?').getByText('Ben Guest · 1 vote').waitFor(T)],
    [() => api(ada, 'POST', `${s}/groups/${id.groups['Group 1']}/join`, {}), () => trainer.getByRole('list', { name: 'Members of Group 1' }).getByText('Ada Guest').waitFor(T)],
    [async () => api(ben, 'POST', `${s}/questions/${(await ids(trainer, sid)).questions['Extra one?']}/vote`, {}), () => question(trainer, 'Extra one?').getByText('Ada Guest · 1 vote').waitFor(T)],
  ];
  for (const [cause, seen] of events) {
    await cause();
    await seen();
  }
  await question(ben, 'Extra two?').getByText('1 vote').waitFor(T);
  await question(ada, 'Extra one?').getByText('1 vote').waitFor(T);

  // Everything typed is intact, with its focus, caret and selection.
  assert.deepEqual(await focused(trainer), typed, 'the answer box keeps its text, focus and caret');
  assert.deepEqual(await focused(ben), editing, 'the edit box keeps its text, focus and selection');
  assert.deepEqual(await focused(ada), asking, 'the question box keeps its text, focus and caret');
  assert.equal(await trainer.getByLabel('Poll question', { exact: true }).inputValue(), 'Which topic next?');
  assert.equal(await trainer.getByLabel('Option 2', { exact: true }).inputValue(), 'Quizzes');
  assert.equal(await trainer.getByLabel('Message to all groups', { exact: true }).inputValue(), 'Five minutes left');

  // Typing goes on where the caret is; what is sent is what was typed.
  await trainer.keyboard.type('no ');
  await trainer.keyboard.press('End');
  await trainer.keyboard.type(' to join.');
  await question(trainer, Q_ADA).getByRole('button', { name: 'Answer publicly' }).click();
  const ANSWER = 'Because they need no account to join.';
  for (const p of [trainer, ada, ben]) await question(p, Q_ADA).getByText(ANSWER).waitFor(T);
  await ben.keyboard.type('for guests?');
  await ben.getByRole('button', { name: 'Save my question' }).click();
  await question(trainer, 'Is the deck shared afterwards? Or for guests?').waitFor(T);
  await ada.keyboard.type('break?');
  await ada.getByRole('button', { name: 'Ask', exact: true }).click();
  await question(trainer, 'How long is the break?').waitFor(T);

  // The broadcast box, then the new poll form, keep focus and caret too.
  const broadcast = trainer.getByLabel('Message to all groups', { exact: true });
  await broadcast.click();
  await broadcast.press('End');
  await trainer.keyboard.press('ArrowLeft');
  assert.deepEqual(await focused(trainer), { name: 'Message to all groups', value: 'Five minutes left', start: 16, end: 16 });
  await api(ben, 'POST', `${s}/groups/${id.groups['Group 2']}/join`, {});
  await trainer.getByRole('list', { name: 'Members of Group 2' }).getByText('Ben Guest').waitFor(T);
  await api(ben, 'POST', `${s}/polls/${pace}/answer`, { answer: 2 });
  await poll(trainer, PACE).getByText('Too fast: 2 (100 %)').waitFor(T);
  assert.deepEqual(await focused(trainer), { name: 'Message to all groups', value: 'Five minutes left', start: 16, end: 16 });
  await trainer.keyboard.press('End');
  await trainer.keyboard.type(', then back here.');
  await trainer.getByRole('button', { name: 'Send to all groups' }).click();
  for (const p of [ada, ben]) {
    await p.getByRole('status', { name: 'Messages to all groups' }).getByText('Five minutes left, then back here.').waitFor(T);
  }

  const pollQuestion = trainer.getByLabel('Poll question', { exact: true });
  await pollQuestion.click();
  await pollQuestion.press('End');
  await pollQuestion.pressSequentially(' (pick one)');
  await api(ada, 'POST', `${s}/groups/leave`, {});
  await trainer.getByRole('list', { name: 'Members of Group 1' }).getByText('Nobody yet.').waitFor(T);
  await api(ada, 'POST', `${s}/questions`, { text: 'Extra three?' });
  await question(trainer, 'Extra three?').waitFor(T);
  assert.deepEqual(await focused(trainer), { name: 'Poll question', value: 'Which topic next? (pick one)', start: 28, end: 28 });
  await trainer.getByRole('button', { name: 'Create and open' }).click();
  await poll(ada, 'Which topic next? (pick one)').getByRole('radio', { name: 'Quizzes', exact: true }).waitFor(T);
  await close();
});

test('status lines follow the state: the poll, the quiz and the join', async () => {
  const { trainer, students: [ada], close } = await lesson({ students: ['Ada Guest'] });
  // The join said "You joined …" on the course page; the session page no longer does.
  assert.doesNotMatch(await status(ada).textContent(), /You joined/, 'the join message stays on the course page');

  async function build(q, { quiz = false, timer } = {}) {
    const details = trainer.locator('details.poll-new');
    if (!(await details.evaluate((d) => d.open))) await trainer.getByText('New poll', { exact: true }).click();
    await trainer.getByLabel('Poll type', { exact: true }).selectOption('yes_no');
    await trainer.getByLabel('Poll question', { exact: true }).fill(q);
    if (quiz) await trainer.getByLabel('Quiz: mark the correct answer, score the students').check();
    if (timer) await trainer.getByLabel('Timer in seconds (optional, 5 to 3600)').fill(String(timer));
    await trainer.getByRole('button', { name: 'Create and open' }).click();
    await poll(trainer, q).getByText('Open', { exact: true }).waitFor(T);
    await status(trainer).filter({ hasText: 'The poll is open.' }).waitFor(T);
    assert.equal(await details.evaluate((d) => d.open), false, 'the form closes once the poll is made');
  }
  async function answer(q) {
    await poll(ada, q).getByRole('radio', { name: 'Yes', exact: true }).check();
    await poll(ada, q).getByRole('button', { name: 'Send my answer' }).click();
    await status(ada).filter({ hasText: 'You can change it until the poll closes.' }).waitFor(T);
  }

  // A poll the trainer closes.
  await build('Ready?');
  await answer('Ready?');
  await poll(trainer, 'Ready?').getByRole('button', { name: 'Close', exact: true }).click();
  await poll(ada, 'Ready?').getByText('Closed', { exact: true }).waitFor(T);
  await until(async () => !(await status(trainer).textContent()).includes('The poll is open.'), 10000, 'the trainer\'s status to leave "The poll is open."');
  await until(async () => !(await status(ada).textContent()).includes('until the poll closes'), 10000, 'the student\'s status to leave "until the poll closes"');

  // A quiz its timer closes.
  await build('Is HTTP/2 multiplexed?', { quiz: true, timer: 5 });
  await answer('Is HTTP/2 multiplexed?');
  await poll(ada, 'Is HTTP/2 multiplexed?').getByText('Closed', { exact: true }).waitFor({ timeout: 20000 });
  await poll(trainer, 'Is HTTP/2 multiplexed?').getByText('Closed', { exact: true }).waitFor(T);
  await until(async () => !(await status(trainer).textContent()).includes('The poll is open.'), 10000, 'the trainer\'s status to leave "The poll is open."');
  await until(async () => !(await status(ada).textContent()).includes('until the poll closes'), 10000, 'the student\'s status to leave "until the poll closes"');
  await close();
});

test('staff see the private answer they gave, live and after a reload; other students do not', async () => {
  const { trainer, students: [ada, ben], sid, close } = await lesson();
  const Q = 'Can I see my grade?';
  const A = 'Yes: in the course page, tomorrow.';
  await api(ada, 'POST', `sessions/${encodeURIComponent(sid)}/questions`, { text: Q });
  // The same trainer watches from a second screen.
  const second = await trainer.context().newPage();
  await second.goto(trainer.url());
  await second.locator('#connection').filter({ hasText: 'Live updates on.' }).waitFor(T);
  await question(second, Q).waitFor(T);
  await question(trainer, Q).getByLabel(`Answer to: ${Q}`).fill(A);
  await question(trainer, Q).getByRole('button', { name: 'Answer privately' }).click();
  for (const p of [trainer, second]) await question(p, Q).getByText(`Answered privately: ${A}`).waitFor(T);
  await question(ada, Q).getByText(`Private answer to you: ${A}`).waitFor(T);
  await question(ben, Q).getByText('Answered privately.', { exact: true }).waitFor(T);
  assert.equal(await ben.getByText(A).count(), 0, 'another student never sees the text');
  await second.reload();
  await question(second, Q).getByText(`Answered privately: ${A}`).waitFor(T);
  // Reopened, the private answer is gone for staff too.
  await question(trainer, Q).getByRole('button', { name: 'Reopen' }).click();
  await question(second, Q).getByLabel(`Answer to: ${Q}`).waitFor(T);
  assert.equal(await second.getByText(A).count(), 0, 'a withdrawn private answer leaves the staff screen');
  await close();
});

test('no upvote on answered or dismissed questions; a vote can still be taken back', async () => {
  const { trainer, students: [ada, ben], sid, close } = await lesson();
  const s = `sessions/${encodeURIComponent(sid)}`;
  const [A, D] = ['Is it recorded?', 'Off topic, sorry'];
  await api(ada, 'POST', `${s}/questions`, { text: A });
  await api(ada, 'POST', `${s}/questions`, { text: D });
  await question(ben, A).getByRole('button', { name: 'Upvote' }).click();
  await question(ben, A).getByRole('button', { name: 'Remove my vote' }).waitFor(T);
  await question(ben, D).getByRole('button', { name: 'Upvote' }).waitFor(T);
  await question(trainer, A).getByRole('button', { name: 'Answered live' }).click();
  await question(trainer, D).getByRole('button', { name: 'Dismiss' }).click();
  await question(ben, A).getByText('Answered', { exact: true }).waitFor(T);
  await question(ben, D).getByText('Dismissed', { exact: true }).waitFor(T);
  for (const p of [ben, trainer]) {
    for (const q of [A, D]) {
      assert.equal(await question(p, q).getByRole('button', { name: 'Upvote' }).count(), 0, `no upvote on "${q}"`);
    }
  }
  // Ben's vote on the answered question can still be taken back.
  await question(ben, A).getByRole('button', { name: 'Remove my vote' }).click();
  await question(trainer, A).getByText('Ada Guest · 0 votes').waitFor(T);
  // Reopened, it takes votes again.
  await question(trainer, D).getByRole('button', { name: 'Reopen' }).click();
  await question(ben, D).getByRole('button', { name: 'Upvote' }).waitFor(T);
  await close();
});

test('the console on a laptop: used forms close, long panels scroll, "Who is here" in sight', async () => {
  const { trainer, students: [ada, ben], sid, close } = await lesson();
  const s = `sessions/${encodeURIComponent(sid)}`;
  // A new deck: the form closes once the deck is made.
  await trainer.getByText('New deck', { exact: true }).click();
  await trainer.getByLabel('Deck title', { exact: true }).fill('Extra');
  await trainer.getByLabel('Markdown', { exact: true }).fill('# One\n\nText\n\n# Two\n\nMore');
  await trainer.getByRole('button', { name: 'Create the deck' }).click();
  await trainer.getByLabel('Deck to show').filter({ hasText: 'Extra (2 slides)' }).waitFor(T);
  assert.equal(await trainer.locator('details.deck-new').evaluate((d) => d.open), false, 'the New deck form closes');
  // Four new polls, each from the form, which closes after each.
  for (const q of ['First?', 'Second?', 'Third?', 'Fourth?']) {
    await trainer.getByText('New poll', { exact: true }).click();
    await trainer.getByLabel('Poll type', { exact: true }).selectOption('yes_no');
    await trainer.getByLabel('Poll question', { exact: true }).fill(q);
    await trainer.getByRole('button', { name: 'Save as draft' }).click();
    await poll(trainer, q).waitFor(T);
    assert.equal(await trainer.locator('details.poll-new').evaluate((d) => d.open), false, 'the New poll form closes');
  }
  // Ten questions.
  for (const [p, n] of [[ada, 0], [ben, 1]]) {
    for (let i = 0; i < 5; i += 1) await api(p, 'POST', `${s}/questions`, { text: `Question ${n * 5 + i + 1} of ten?` });
  }
  await question(trainer, 'Question 10 of ten?').waitFor(T);
  await trainer.evaluate(() => window.scrollTo(0, 0));
  const height = await trainer.evaluate(() => document.documentElement.scrollHeight);
  // Two and a half laptop screens at most, however many polls and questions (3,934 px before).
  assert.ok(height <= 2.5 * LAPTOP.height, `the console stays within 2.5 laptop screens: ${height} px`);
  // Who is here: in sight at the top of the page, without scrolling anything.
  const here = trainer.getByRole('list', { name: 'Who is here' });
  for (const name of ['Ada Guest', 'Ben Guest']) {
    const box = await here.getByText(name).boundingBox();
    assert.ok(box && box.y >= 0 && box.y + box.height <= LAPTOP.height, `${name} is in sight: ${JSON.stringify(box)}`);
  }
  await close();
});

test('the slide controls fit a phone, for the trainer and a browsing student', async () => {
  const { trainer, students: [ada], close } = await lesson({ students: ['Ada Guest'], viewport: PHONE });
  await trainer.getByLabel('Who sets the pace').selectOption('free');
  await ada.getByRole('button', { name: 'Previous page' }).waitFor(T);
  for (const p of [trainer, ada]) {
    const prev = await p.getByRole('button', { name: 'Previous page' }).boundingBox();
    const next = await p.getByRole('button', { name: 'Next page' }).boundingBox();
    const page = await p.locator('#slide-indicator').boundingBox();
    assert.ok(Math.abs(prev.height - next.height) < 1, `"Previous page" is on one line like "Next page": ${prev.height} vs ${next.height}`);
    assert.ok(Math.abs(prev.y - next.y) < 1 && page.y >= prev.y && page.y + page.height <= prev.y + prev.height + 1, 'one row');
    assert.ok(prev.x >= 0 && next.x + next.width <= PHONE.width, 'within the screen');
  }
  await close();
});

test('every control of the session page has an accessible name', async () => {
  const { trainer, students: [ada], close } = await lesson({ students: ['Ada Guest'] });
  await api(ada, 'POST', `sessions/${encodeURIComponent((await trainer.url()).split('#/session/')[1])}/questions`, { text: 'Named?' });
  await question(trainer, 'Named?').waitFor(T);
  await trainer.getByText('New poll', { exact: true }).click();
  await trainer.getByText('New deck', { exact: true }).click();
  for (const p of [trainer, ada]) {
    const unnamed = await p.evaluate(() => [...document.querySelectorAll('main button, main input, main select, main textarea, main summary')]
      .filter((e) => e.getClientRects().length > 0)
      .filter((e) => !(e.getAttribute('aria-label') || (e.labels && [...e.labels].some((l) => l.textContent.trim()))
        || (['BUTTON', 'SUMMARY'].includes(e.tagName) && e.textContent.trim())))
      .map((e) => e.outerHTML.slice(0, 120)));
    assert.deepEqual(unnamed, [], 'controls without a name');
  }
  await close();
});
