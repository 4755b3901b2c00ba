/* global document, window, history, location, localStorage, fetch, navigator, Blob, crypto, setInterval, clearInterval, setTimeout, URLSearchParams */
// The demo chat's page. Everything it receives comes through the postbox client;
// everything it sends goes to the demo backend (/demo/api), which calls postbox's REST API.
import { connect } from '/client/postbox.js';

const $ = (id) => document.getElementById(id);
const NAME = /^[A-Za-z0-9_-]{1,32}$/;
const STATE_TEXT = { connecting: 'Connecting…', open: 'Connected', reconnecting: 'Reconnecting…', closed: 'Offline' };
const HELLO_MS = 20_000; // under the backend's 60 s presence window

let me;
let client;
let helloTimer;
let current; // the shown conversation: '#room' or '@user'
const conversations = new Map(); // key → { item, badge, unread }

async function api(path, body) {
  const res = await fetch(`/demo/api/${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const answer = res.status === 204 ? {} : await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(answer.error?.message ?? `the server answered ${res.status}`);
  return answer;
}

function newMsgId() {
  // randomUUID exists only in secure contexts (https, localhost); a LAN address over http is not one.
  return crypto.randomUUID?.() ?? `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
}

function showState(state, detail = '') {
  const el = $('state');
  el.dataset.state = state;
  el.textContent = STATE_TEXT[state] + detail;
}

function conversation(key) {
  let conv = conversations.get(key);
  if (conv) return conv;
  const item = document.createElement('li');
  const button = document.createElement('button');
  button.type = 'button';
  button.dataset.conv = key;
  button.textContent = key;
  const badge = document.createElement('span');
  badge.className = 'badge';
  badge.hidden = true;
  button.append(badge);
  button.addEventListener('click', () => select(key));
  item.append(button);
  $(key.startsWith('#') ? 'rooms' : 'dms').append(item);
  conv = { item: button, badge, unread: 0 };
  conversations.set(key, conv);
  return conv;
}

function select(key) {
  current = key;
  const conv = conversation(key);
  conv.unread = 0;
  conv.badge.hidden = true;
  for (const [k, c] of conversations) c.item.classList.toggle('active', k === key);
  $('conv-title').textContent = key;
  $('conv-sub').textContent = key.startsWith('#') ? 'everyone in the room' : `just you and ${key.slice(1)}`;
  let shown = 0;
  for (const li of $('messages').children) {
    li.hidden = li.dataset.conv !== key;
    if (!li.hidden) shown += 1;
  }
  $('empty').hidden = shown > 0;
  $('composer').hidden = false;
  $('text').focus();
  scrollDown();
}

function scrollDown() {
  const list = $('messages');
  list.scrollTop = list.scrollHeight;
}

function addMessage(msg) {
  const { from, to, room, text, sentAt } = msg.data;
  const key = room ? `#${room}` : `@${from === me ? to : from}`;
  const conv = conversation(key);
  const li = document.createElement('li');
  li.className = from === me ? 'msg mine fresh' : 'msg fresh';
  li.addEventListener('animationend', () => li.classList.remove('fresh'), { once: true });
  li.dataset.id = msg.id;
  li.dataset.conv = key;
  const head = document.createElement('div');
  head.className = 'meta';
  const author = document.createElement('b');
  author.textContent = from === me ? 'you' : from;
  const time = document.createElement('time');
  time.dateTime = sentAt;
  time.textContent = new Date(sentAt).toLocaleTimeString();
  head.append(author, time);
  const body = document.createElement('div');
  body.className = 'text';
  body.textContent = text;
  li.append(head, body);
  li.hidden = key !== current;
  $('messages').append(li);
  if (key === current) {
    $('empty').hidden = true;
    scrollDown();
  } else {
    conv.unread += 1;
    conv.badge.textContent = String(conv.unread);
    conv.badge.hidden = false;
  }
}

function showClock(msg) {
  // The event id starts with the enqueue time in ms: the server's clock, whoever enqueued the tick.
  const ms = Number(msg.id.split('-')[0]);
  $('clock').textContent = new Date(ms).toLocaleTimeString();
}

async function login(name) {
  const session = await api('login', { name });
  me = name;
  localStorage.setItem('postbox-demo-name', name);
  history.replaceState(null, '', `/demo?user=${encodeURIComponent(name)}`);
  $('login').hidden = true;
  $('chat').hidden = false;
  $('me').hidden = false;
  $('me').textContent = `@${name}`;
  for (const room of session.rooms) conversation(`#${room}`);
  select(`#${session.rooms[0]}`);

  client = connect({
    url: '', // this page's origin
    token: session.token,
    getToken: async () => (await api('token', { name })).token,
    events: ['chat', 'clock'],
    // One server on this machine: come back quickly after a restart (the default grows to 30 s).
    backoff: { minMs: 250, maxMs: 4000 },
  });
  showState(client.state);
  client.onState((state) => showState(state));
  client.onLifecycle((event) => {
    if (event.type === 'reconnecting') showState('reconnecting', ` (${event.attempt})`);
  });
  client.on('chat', addMessage);
  client.on('clock', showClock);
  helloTimer = setInterval(() => api('presence', { name }).catch(() => {}), HELLO_MS);
}

function leave() {
  clearInterval(helloTimer);
  client?.close(); // sends the waiting acks with keepalive
  if (me) {
    const bye = new Blob([JSON.stringify({ name: me, bye: true })], { type: 'application/json' });
    navigator.sendBeacon('/demo/api/presence', bye);
  }
}

async function send(text) {
  const target = current.startsWith('#') ? { room: current.slice(1) } : { to: current.slice(1) };
  const body = { from: me, text, msgId: newMsgId(), ...target };
  // fetch rejects with a TypeError when the server cannot be reached (say, it is restarting):
  // keep trying for half a minute. A direct message is retried with the same msgId, the
  // idempotency key, so it is never enqueued twice even if an answer was lost on the way.
  const giveUpAt = Date.now() + 30_000;
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await api('send', body);
    } catch (error) {
      if (!(error instanceof TypeError) || Date.now() > giveUpAt) throw error;
      $('send-error').textContent = 'Server unreachable, retrying…';
      await new Promise((resolve) => setTimeout(resolve, Math.min(3000, 250 * 2 ** attempt)));
    }
  }
}

$('login-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const name = $('name').value.trim();
  $('login-error').textContent = '';
  login(name).catch((error) => ($('login-error').textContent = error.message));
});

$('composer').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $('text');
  const text = input.value.trim();
  if (!text || !current) return;
  input.value = '';
  $('send-error').textContent = '';
  send(text).then(() => ($('send-error').textContent = '')).catch((error) => {
    $('send-error').textContent = `Not sent: ${error.message}`;
    if (!input.value) input.value = text;
  });
});

$('new-dm').addEventListener('submit', (event) => {
  event.preventDefault();
  const name = $('dm-name').value.trim();
  if (!NAME.test(name)) return;
  $('dm-name').value = '';
  select(`@${name}`);
});

$('logout').addEventListener('click', () => {
  leave();
  localStorage.removeItem('postbox-demo-name');
  location.href = '/demo';
});

window.addEventListener('pagehide', leave);
window.addEventListener('pageshow', (event) => {
  if (event.persisted) location.reload(); // back from the bfcache with a closed client
});

const wanted = new URLSearchParams(location.search).get('user');
$('name').value = wanted ?? localStorage.getItem('postbox-demo-name') ?? '';
if (wanted && NAME.test(wanted)) {
  login(wanted).catch((error) => ($('login-error').textContent = error.message));
} else {
  $('name').focus();
}
