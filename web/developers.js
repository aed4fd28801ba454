// The developers' page (/developers): a bare EventSource on a channel of the demo app.
const log = document.getElementById('log');
let es;
document.getElementById('connect').addEventListener('submit', (e) => {
  e.preventDefault();
  if (es) es.close();
  const token = document.getElementById('token').value.trim();
  const channel = document.getElementById('channel').value.trim();
  const url = `/v1/apps/demo/events?channel=${encodeURIComponent(channel)}&token=${encodeURIComponent(token)}`;
  log.textContent = `Connecting to ${channel}...\n`;
  es = new EventSource(url);
  es.onopen = () => { log.textContent += 'Connected.\n'; };
  const show = (ev) => { log.textContent += `${ev.type}: ${ev.data}\n`; };
  es.onmessage = show;
  for (const t of ['reset', 'presence', 'disconnect']) es.addEventListener(t, show);
  es.onerror = () => { log.textContent += 'Connection error (the browser retries by itself unless the token was refused).\n'; };
});
