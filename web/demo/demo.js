// The demo page: a Herald client with a form. Tokens come from the server's demo
// token endpoint, which exists only for the `demo` app (see docs/sdk.md).
import { Herald } from '/sdk/herald.js';

const $ = (id) => document.getElementById(id);
let client = null;
let sub = null;

function show(text, cls) {
  const li = document.createElement('li');
  if (cls) li.className = cls;
  li.textContent = text;
  $('messages').prepend(li);
}

function setConnected(on) {
  $('publish-button').disabled = !on;
  $('disconnect-button').disabled = !on;
}

async function getToken() {
  const user = $('user').value.trim() || 'guest';
  const res = await fetch(`/demo/token?sub=${encodeURIComponent(user)}`);
  if (!res.ok) throw new Error((await res.json()).error.message);
  return res.text();
}

$('connect').addEventListener('submit', (e) => {
  e.preventDefault();
  if (client) client.close();
  const choice = new FormData(e.target).get('transport');
  const channel = $('channel').value.trim();
  client = new Herald({
    app: 'demo',
    getToken,
    transports: choice === 'auto' ? undefined : [choice],
    shareTabs: false,
  });
  client.on('state', ({ state, transport }) => {
    $('state').textContent = state;
    $('transport').textContent = transport || 'none';
    setConnected(state === 'connected');
  });
  sub = client.subscribe(channel, {
    onMessage: (m) => show(`#${m.offset} ${m.event} ${JSON.stringify(m.data)}`),
    onReset: (r) => show(`reset (${r.reason}): history no longer reaches back; reload your state`, 'reset'),
    onError: (err) => show(`refused: ${err.message}`, 'reset'),
  });
});

$('disconnect-button').addEventListener('click', () => {
  if (client) client.close();
  client = null;
  sub = null;
  setConnected(false);
});

$('publish').addEventListener('submit', async (e) => {
  e.preventDefault();
  $('publish-error').textContent = '';
  if (!client || !sub) return;
  const event = $('event').value.trim();
  try {
    await client.publish(sub.channel, { text: $('text').value, from: $('user').value }, {
      event: event && event !== 'message' ? event : undefined,
    });
    $('text').value = '';
  } catch (err) {
    $('publish-error').textContent = `Not published: ${err.message}`;
  }
});
