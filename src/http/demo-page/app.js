/* global document, window, history, location, localStorage, sessionStorage, fetch, navigator, Blob, crypto, matchMedia, setInterval, clearInterval, setTimeout, clearTimeout, URLSearchParams, Notification */
// The demo chat's page. Everything it receives comes through the postbox client;
// everything it sends goes to the demo backend (/demo/api), which calls postbox's REST API.
// It keeps a short history and an outbox per user in localStorage, so a reload shows the
// conversation at once and a message written while the server is away is not lost.
import { connect, subscribePush, unsubscribePush } from '/client/postbox.js';

const $ = (id) => document.getElementById(id);
const NAME = /^[A-Za-z0-9_-]{1,32}$/;
const NAME_KEY = 'postbox-demo-name'; // set while signed in: reopening the page rejoins
const ERROR_KEY = 'postbox-demo-error'; // why an automatic rejoin was refused, for the form after the reload
const STATE_TEXT = { idle: 'Not connected', connecting: 'Connecting…', open: 'Connected', reconnecting: 'Reconnecting…', closed: 'Offline' };
const HELLO_MS = 20_000; // under the backend's 60 s presence window
const HISTORY_MAX = 200; // messages kept per conversation
const SEND_TRIES = 6; // then the bubble shows as failed, with a Retry button
const retryDelayMs = (attempt) => Math.min(8000, 500 * 2 ** attempt); // 0.5, 1, 2, 4, 8 s: ~15 s in all

let me;
let store;
let client;
let helloTimer;
let current; // the shown conversation: '#room' or '@user'
const conversations = new Map(); // key → { button, badge, unread, records, seen }
const outbox = new Map(); // msgId → { msgId, conv, text, body, sentAt, status, error, li, busy }

// ---- the demo backend -------------------------------------------------------

async function api(path, body) {
  let res;
  try {
    res = await fetch(`/demo/api/${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  } catch {
    // fetch rejects with a TypeError when the server cannot be reached (say, it is restarting).
    throw Object.assign(new Error('the server is unreachable'), { retryable: true });
  }
  const answer = res.status === 204 ? {} : await res.json().catch(() => ({}));
  if (!res.ok) {
    const message = answer.error?.message ?? `the server answered ${res.status}`;
    throw Object.assign(new Error(message), { retryable: res.status >= 500 || res.status === 429 || res.status === 408 });
  }
  return answer;
}

function newMsgId() {
  // randomUUID exists only in secure contexts (https, localhost); a LAN address over http is not one.
  return crypto.randomUUID?.() ?? `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
}

/** Waits `ms`, or less when wakeSleepers() is called (the stream came back: the server is up). */
const sleepers = new Set();
function nap(ms) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      sleepers.delete(done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    sleepers.add(done);
  });
}
const wakeSleepers = () => [...sleepers].forEach((wake) => wake());

// ---- local history and outbox (localStorage, per user) ----------------------

function createStore(user) {
  const prefix = `postbox-demo:v1:${user}:`;
  const read = (key, fallback) => {
    try {
      return JSON.parse(localStorage.getItem(prefix + key)) ?? fallback;
    } catch {
      return fallback;
    }
  };
  const write = (key, value) => {
    try {
      localStorage.setItem(prefix + key, JSON.stringify(value));
    } catch {
      // Storage full or disabled: the chat still works, it only forgets on reload.
    }
  };
  return {
    withHistory: () =>
      Object.keys(localStorage)
        .filter((key) => key.startsWith(`${prefix}conv:`))
        .map((key) => key.slice(prefix.length + 5)),
    history: (conv) => read(`conv:${conv}`, []),
    saveHistory: (conv, records) => write(`conv:${conv}`, records),
    outbox: () => read('outbox', []),
    saveOutbox: () =>
      write('outbox', [...outbox.values()].map(({ msgId, conv, text, body, sentAt, status, error }) => ({ msgId, conv, text, body, sentAt, status, error }))),
    /** The conversations in the sidebar, a direct one included before anything was said in it. */
    opened: () => read('opened', []),
    saveOpened: () => write('opened', [...conversations.keys()]),
    current: () => read('current', undefined),
    saveCurrent: (conv) => write('current', conv),
  };
}

/** What identifies a message across redeliveries and fan-out: the page's msgId, else the event id. */
const recordKey = (record) => record.msgId ?? record.id;

// ---- rendering --------------------------------------------------------------

function showState(state, detail = '') {
  $('state').dataset.state = state;
  const more = document.createElement('span');
  more.className = 'state-detail'; // left out on a phone, where the header has one line
  more.textContent = detail;
  $('state-text').replaceChildren(STATE_TEXT[state], more);
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
  conv = { button, badge, unread: 0, records: [], seen: new Set() };
  conversations.set(key, conv);
  store.saveOpened();
  return conv;
}

function select(key) {
  current = key;
  store.saveCurrent(key);
  const conv = conversation(key);
  conv.unread = 0;
  conv.badge.hidden = true;
  for (const [k, c] of conversations) c.button.classList.toggle('active', k === key);
  conv.button.scrollIntoView({ block: 'nearest', inline: 'nearest' }); // the phone's strip scrolls sideways
  $('conv-title').textContent = key;
  $('conv-sub').textContent = key.startsWith('#') ? 'everyone in the room' : `just you and ${key.slice(1)}`;
  let shown = 0;
  for (const li of $('messages').children) {
    li.hidden = li.dataset.conv !== key;
    if (!li.hidden) shown += 1;
  }
  $('empty').hidden = shown > 0;
  $('composer').hidden = false;
  // Not on a touch screen: focusing there pops the keyboard up over the conversation.
  if (matchMedia('(pointer: fine)').matches) $('text').focus();
  scrollDown();
}

function scrollDown() {
  const list = $('messages');
  list.scrollTop = list.scrollHeight;
}

function timeText(iso) {
  const at = new Date(iso);
  const today = at.toDateString() === new Date().toDateString();
  return today ? at.toLocaleTimeString() : at.toLocaleString();
}

/** A message bubble; `status` (sending, accepted, failed) marks one of ours the stream has not brought back yet. */
function bubble(record, convKey, { fresh = false, status } = {}) {
  const li = document.createElement('li');
  const mine = record.from === me;
  li.className = `msg${mine ? ' mine' : ''}${fresh ? ' fresh' : ''}`;
  if (fresh) li.addEventListener('animationend', () => li.classList.remove('fresh'), { once: true });
  if (record.id) li.dataset.id = record.id;
  if (record.msgId) li.dataset.msgId = record.msgId;
  li.dataset.conv = convKey;
  const head = document.createElement('div');
  head.className = 'meta';
  const author = document.createElement('b');
  author.textContent = mine ? 'you' : record.from;
  const time = document.createElement('time');
  time.dateTime = record.sentAt;
  time.textContent = timeText(record.sentAt);
  const note = document.createElement('span');
  note.className = 'status';
  head.append(author, time, note);
  const body = document.createElement('div');
  body.className = 'text';
  body.textContent = record.text;
  li.append(head, body);
  if (status) li.dataset.status = status;
  li.hidden = convKey !== current;
  return li;
}

/** Shows a bubble in its conversation: stream messages go above our own still pending ones. */
function place(li, convKey) {
  const list = $('messages');
  // Someone reading further up is not pulled down by a new message; their own always shows.
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  const firstPending = list.querySelector(`li.msg[data-status][data-conv="${convKey}"]`);
  if (li.dataset.status || !firstPending) list.append(li);
  else list.insertBefore(li, firstPending);
  if (convKey === current) {
    $('empty').hidden = true;
    if (atBottom || li.classList.contains('mine')) scrollDown();
  }
}

// ---- receiving --------------------------------------------------------------

/** Records a message in the conversation's history; false when it was already there (a redelivery). */
function remember(convKey, record, save = true) {
  const conv = conversation(convKey);
  const key = recordKey(record);
  if (conv.seen.has(key)) return false;
  conv.seen.add(key);
  conv.records.push(record);
  if (conv.records.length > HISTORY_MAX) {
    conv.records.splice(0, conv.records.length - HISTORY_MAX);
    conv.seen = new Set(conv.records.map(recordKey));
  }
  if (save) store.saveHistory(convKey, conv.records);
  return true;
}

function onChat(msg) {
  const { msgId, from, to, room, text, sentAt } = msg.data ?? {};
  const peer = room ?? (from === me ? to : from);
  // Names as the demo backend checks them: anything else is not a chat message of this page's.
  if (typeof text !== 'string' || !NAME.test(from ?? '') || !NAME.test(peer ?? '')) return;
  const convKey = room ? `#${room}` : `@${peer}`;
  const record = { id: msg.id, msgId, from, to, room, text, sentAt };
  // Stored before the handler returns, so before the client acks it: what the server forgets, the page kept.
  if (!remember(convKey, record)) return;
  const pending = msgId && outbox.get(msgId);
  if (pending) {
    // One of ours came back on the stream: it is sent. It takes its place among the delivered ones.
    outbox.delete(msgId);
    store.saveOutbox();
    const li = bubble(record, convKey);
    pending.li.remove();
    place(li, convKey);
    return;
  }
  place(bubble(record, convKey, { fresh: true }), convKey);
  if (convKey !== current) {
    const conv = conversation(convKey);
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

// ---- sending ----------------------------------------------------------------

const STATUS_TEXT = { sending: 'Sending…', accepted: 'Sent', failed: 'Not sent' };

function setStatus(entry, status, note = '') {
  entry.status = status;
  store.saveOutbox();
  const li = entry.li;
  li.dataset.status = status;
  const label = li.querySelector('.status');
  label.textContent = note || STATUS_TEXT[status];
  li.querySelector('.msg-actions')?.remove();
  if (status !== 'failed') return;
  const actions = document.createElement('div');
  actions.className = 'msg-actions';
  const reason = document.createElement('span');
  reason.className = 'reason';
  reason.textContent = entry.error ?? 'the server did not take it';
  const retry = document.createElement('button');
  retry.type = 'button';
  retry.className = 'retry';
  retry.textContent = 'Retry';
  retry.addEventListener('click', () => {
    setStatus(entry, 'sending');
    void deliver(entry);
  });
  const discard = document.createElement('button');
  discard.type = 'button';
  discard.className = 'discard';
  discard.textContent = 'Discard';
  discard.addEventListener('click', () => {
    outbox.delete(entry.msgId);
    store.saveOutbox();
    li.remove();
  });
  actions.append(reason, retry, discard);
  li.append(actions);
  if (entry.conv === current) scrollDown();
}

/** Puts a message in the outbox and shows it at once as a pending bubble. */
function queue(entry) {
  outbox.set(entry.msgId, entry);
  const record = { msgId: entry.msgId, from: me, text: entry.text, sentAt: entry.sentAt };
  entry.li = bubble(record, entry.conv, { fresh: entry.status === 'sending', status: entry.status });
  place(entry.li, entry.conv);
  setStatus(entry, entry.status);
}

/**
 * Sends an outbox entry, retrying with backoff while the server is away or failing. Every try
 * carries the same msgId, the idempotency key, so a send whose answer was lost is not enqueued twice.
 */
async function deliver(entry) {
  if (entry.busy) return;
  entry.busy = true;
  try {
    for (let tries = 1; outbox.has(entry.msgId); tries += 1) {
      try {
        await api('send', entry.body);
        // The stream may have brought it back already; else it is sent, and shown once it arrives.
        if (outbox.has(entry.msgId)) setStatus(entry, 'accepted');
        return;
      } catch (error) {
        if (!outbox.has(entry.msgId)) return;
        entry.error = error.message;
        if (!error.retryable || tries >= SEND_TRIES) return setStatus(entry, 'failed');
        setStatus(entry, 'sending', 'Retrying…');
        await nap(retryDelayMs(tries - 1));
      }
    }
  } finally {
    entry.busy = false;
  }
}

function send(text) {
  const msgId = newMsgId();
  const target = current.startsWith('#') ? { room: current.slice(1) } : { to: current.slice(1) };
  const entry = { msgId, conv: current, text, body: { from: me, text, msgId, ...target }, sentAt: new Date().toISOString(), status: 'sending' };
  queue(entry);
  void deliver(entry);
}


// ---- notify me when closed (Web Push) ---------------------------------------

/** The postbox service-worker helper, registered for /demo: it shows pushes and acks them on click. */
let pushWorker;
const pushOptions = () => ({ url: '', getToken: async () => (await api('token', { name: me })).token, serviceWorker: navigator.serviceWorker });

async function setupPush() {
  // Push needs a service worker, a push manager and notifications, and the server's VAPID key (push on).
  if (!('serviceWorker' in navigator) || !('PushManager' in window) || !('Notification' in window)) return;
  const key = await fetch('/v1/push/public-key').catch(() => undefined);
  if (!key?.ok) return;
  // Scope /demo (the helper is served with Service-Worker-Allowed), so this page is in it and `ready` resolves.
  pushWorker ??= navigator.serviceWorker.register('/client/postbox-sw.js?open=/demo', { scope: '/demo' });
  await pushWorker;
  const registration = await navigator.serviceWorker.ready;
  const subscribed = (await registration.pushManager.getSubscription()) !== null;
  $('notify').checked = subscribed && Notification.permission === 'granted';
  $('notify-switch').hidden = false;
}

$('notify').addEventListener('change', async (event) => {
  const box = event.target;
  box.disabled = true;
  try {
    if (box.checked) await subscribePush(pushOptions()); // asks for the permission: this runs from a click
    else await unsubscribePush(pushOptions());
    $('notify-switch').title = box.checked ? 'Messages that arrive while no tab is open come as notifications' : '';
  } catch (error) {
    box.checked = !box.checked;
    $('notify-switch').title = `Web Push is not available here: ${error.message}`;
  } finally {
    box.disabled = false;
  }
});

// ---- joining and leaving ----------------------------------------------------

/** Shows `name`'s chat from local history at once, before the server has answered. */
function enter(name) {
  me = name;
  store = createStore(name);
  localStorage.setItem(NAME_KEY, name);
  history.replaceState(null, '', `/demo?user=${encodeURIComponent(name)}`);
  $('login').hidden = true;
  $('chat').hidden = false;
  $('me').hidden = false;
  $('me').textContent = `@${name}`;
  $('me').title = `@${name}`;
  $('logout').hidden = false;
  for (const convKey of store.opened()) conversation(convKey);
  const restored = document.createDocumentFragment(); // one layout for the lot, not one per message
  for (const convKey of store.withHistory()) {
    for (const record of store.history(convKey)) if (remember(convKey, record, false)) restored.append(bubble(record, convKey));
  }
  $('messages').append(restored);
  for (const saved of store.outbox()) {
    // Came back on the stream before the page could note it: already in the history.
    if (conversation(saved.conv).seen.has(saved.msgId)) continue;
    queue(saved);
  }
  store.saveOutbox();
  const remembered = store.current();
  if (remembered) select(remembered);
  for (const entry of outbox.values()) if (entry.status === 'sending') void deliver(entry);
}

/** Connects to the stream with the session the backend handed over. */
function start(session) {
  for (const room of session.rooms) conversation(`#${room}`);
  if (!current) select(`#${session.rooms[0]}`);
  client = connect({
    url: '', // this page's origin
    token: session.token,
    getToken: async () => (await api('token', { name: me })).token,
    events: ['chat', 'clock'],
    // One server on this machine: come back quickly after a restart (the default grows to 30 s).
    backoff: { minMs: 250, maxMs: 4000 },
    // Linked to the push worker: no notification for what this page shows, and clicked ones come here.
    ...('serviceWorker' in navigator ? { serviceWorker: navigator.serviceWorker } : {}),
  });
  setupPush().catch(() => ($('notify-switch').hidden = true));
  showState(client.state);
  client.onState((state) => {
    showState(state);
    if (state === 'open') wakeSleepers(); // the server is back: retry the pending sends now
  });
  client.onLifecycle((event) => {
    if (event.type === 'reconnecting') showState('reconnecting', ` (${event.attempt})`);
  });
  client.on('chat', onChat);
  client.on('clock', showClock);
  helloTimer = setInterval(() => api('presence', { name: me }).catch(() => {}), HELLO_MS);
}

/** Reopening the page: the chat shows at once; the login is retried while the server is away. */
async function rejoin(name) {
  enter(name);
  showState('connecting');
  for (let attempt = 0; ; attempt += 1) {
    try {
      return start(await api('login', { name }));
    } catch (error) {
      if (!error.retryable) throw error;
      showState('connecting', ' (server unreachable)');
      await nap(Math.min(5000, 500 * 2 ** attempt));
    }
  }
}

function leave() {
  clearInterval(helloTimer);
  client?.close(); // sends the waiting acks with keepalive
  if (me) {
    const bye = new Blob([JSON.stringify({ name: me, bye: true })], { type: 'application/json' });
    navigator.sendBeacon('/demo/api/presence', bye);
  }
}

$('login-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const name = $('name').value.trim();
  $('login-error').textContent = '';
  api('login', { name })
    .then((session) => {
      enter(name);
      start(session);
    })
    .catch((error) => ($('login-error').textContent = error.message));
});

$('composer').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $('text');
  const text = input.value.trim();
  if (!text || !current) return;
  input.value = '';
  send(text);
});

$('new-dm').addEventListener('submit', (event) => {
  event.preventDefault();
  const name = $('dm-name').value.trim();
  if (!NAME.test(name)) return;
  $('dm-name').value = '';
  select(`@${name}`);
});

$('logout').addEventListener('click', async () => {
  // This browser's pushes belong to the name signed in: they stop with it.
  if ($('notify').checked) await Promise.race([unsubscribePush(pushOptions()).catch(() => {}), nap(3000)]);
  leave();
  localStorage.removeItem(NAME_KEY); // the history stays, for when this name joins again
  location.href = '/demo';
});

window.addEventListener('pagehide', leave);
window.addEventListener('pageshow', (event) => {
  if (event.persisted) location.reload(); // back from the bfcache with a closed client
});

// ?user= names who to be (a link); else the name this browser signed in with last, unless it signed out.
const wanted = new URLSearchParams(location.search).get('user') ?? localStorage.getItem(NAME_KEY);
if (wanted && NAME.test(wanted)) {
  rejoin(wanted).catch((error) => {
    // Refused (not merely unreachable): back to the form, with the reason.
    leave();
    localStorage.removeItem(NAME_KEY);
    sessionStorage.setItem(ERROR_KEY, `Could not join as ${wanted}: ${error.message}`);
    location.replace('/demo');
  });
} else {
  $('name').value = wanted ?? '';
  $('login-error').textContent = sessionStorage.getItem(ERROR_KEY) ?? '';
  sessionStorage.removeItem(ERROR_KEY);
  $('name').focus();
}
