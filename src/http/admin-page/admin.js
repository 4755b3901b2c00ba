/* global document, sessionStorage, fetch, setTimeout, clearTimeout, Node */
// postbox admin page: plain JS, no build step. It calls the admin API with the
// key as a Bearer header; the key lives in sessionStorage (this tab only).
// Everything that comes from the server is inserted as text, never as HTML.
'use strict';

const STORAGE_KEY = 'pb_admin_key';
const POLL_MS = 2000;
// Their colours are CSS (.s-<name>), so the dark scheme has its own.
const SERIES = [{ name: 'enqueued' }, { name: 'delivered' }, { name: 'acked' }, { name: 'redelivered' }];
/** The chart's scale never goes under this, msgs/s: an idle node draws flat at the bottom, not noise blown up. */
const CHART_MIN_TOP = 5;
const UNIT = 'msgs/s';

const state = { key: sessionStorage.getItem(STORAGE_KEY), selected: null, list: { queues: [], truncated: false }, timer: undefined };
const $ = (id) => document.getElementById(id);

/** Builds an element; strings become text nodes. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'onclick') el.addEventListener('click', v);
    else if (k === 'className') el.className = v;
    else el.setAttribute(k, v);
  }
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function fmtNumber(n) {
  return n == null ? '–' : Number(n).toLocaleString('en-US');
}
function fmtRate(n) {
  if (n === 0) return '0';
  return n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2);
}
function fmtAge(ms) {
  if (ms == null) return '–';
  const s = ms / 1000;
  if (s < 60) return `${Math.floor(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}
function preview(data) {
  const text = typeof data === 'string' ? data : JSON.stringify(data);
  return text.length > 120 ? `${text.slice(0, 117)}…` : text;
}
function userPath(userId) {
  return `/admin/queues/${encodeURIComponent(userId)}`;
}

async function api(path, init = {}) {
  const headers = { authorization: `Bearer ${state.key}`, ...(init.headers || {}) };
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { ...init, headers });
  const body = res.status === 204 ? null : await res.json().catch(() => null);
  if (res.status === 401) {
    signOut('The admin key was not accepted.');
  }
  if (!res.ok) {
    const err = new Error((body && body.error && body.error.message) || `HTTP ${res.status}`);
    err.status = res.status;
    throw err;
  }
  return body;
}

// ---- sign in / out --------------------------------------------------------

function showLogin(message) {
  $('app').hidden = true;
  $('nav').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message || '';
  $('key').focus();
}

async function signIn(key) {
  state.key = key;
  try {
    await api('/admin/stats');
  } catch (err) {
    state.key = null;
    showLogin(err.status === 403 ? 'That is not the admin key (a producer key or a stream token).' : err.message);
    return;
  }
  sessionStorage.setItem(STORAGE_KEY, key);
  // An HttpOnly cookie lets the bull-board page (a plain link) pass the same auth.
  await api('/admin/session', { method: 'POST' }).catch(() => undefined);
  $('login').hidden = true;
  $('app').hidden = false;
  $('nav').hidden = false;
  refresh();
}

function signOut(message) {
  clearTimeout(state.timer);
  state.timer = undefined;
  state.key = null;
  state.selected = null;
  sessionStorage.removeItem(STORAGE_KEY);
  fetch('/admin/session', { method: 'DELETE' }).catch(() => undefined);
  showLogin(message);
}

// ---- polling ----------------------------------------------------------------

async function refresh() {
  clearTimeout(state.timer);
  if (!state.key) return;
  try {
    const [list, stats, detail] = await Promise.all([
      api('/admin/queues?sort=backlog&limit=200'),
      api('/admin/stats'),
      state.selected ? api(`${userPath(state.selected)}?limit=20`).catch((err) => (err.status === 404 ? null : Promise.reject(err))) : undefined,
    ]);
    if (!state.key) return;
    state.list = list;
    renderQueues(list);
    renderStats(stats);
    if (state.selected) renderDetail(detail);
    $('banner').hidden = true;
    $('live').classList.remove('stale');
  } catch (err) {
    if (!state.key) return;
    $('banner').textContent = `Could not refresh: ${err.message}`;
    $('banner').hidden = false;
    $('live').classList.add('stale');
  }
  if (state.key) state.timer = setTimeout(refresh, POLL_MS);
}

// ---- rendering --------------------------------------------------------------

function renderStats(stats) {
  $('t-users').textContent = fmtNumber(stats.totals.users);
  $('t-waiting').textContent = fmtNumber(stats.totals.waiting);
  $('t-inflight').textContent = fmtNumber(stats.totals.inflight);
  $('t-dead').textContent = fmtNumber(stats.totals.dead);
  const streams = stats.nodes.reduce((sum, n) => sum + n.streams, 0);
  $('t-streams').textContent = fmtNumber(streams);
  $('t-nodes').textContent = `${stats.nodes.length} node${stats.nodes.length === 1 ? '' : 's'} · this one ${stats.node.streams}`;
  // Times come as ISO 8601 strings; the chart computes with epoch ms.
  renderChart(stats.series.map((p) => ({ ...p, t: Date.parse(p.t) })));
  $('rates-now').replaceChildren(
    h('span', {}, 'last minute: '),
    ...SERIES.map((s) => h('span', {}, `${s.name} `, h('b', {}, fmtRate(stats.rates.perSecond[s.name])), ` ${UNIT}`)),
  );
}

function renderChart(series) {
  const svg = $('chart');
  const width = Math.max(svg.clientWidth, 300);
  const height = 160;
  const pad = { left: 44, right: 10, top: 24, bottom: 20 };
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  const ns = 'http://www.w3.org/2000/svg';
  const el = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const now = series.length > 0 ? series[series.length - 1].t : Date.now();
  // The axis spans the samples the node has (up to its ring of a few minutes), at least 30 s.
  const span = Math.max(30_000, series.length > 0 ? now - series[0].t : 0);
  const scale = chartScale(series);
  const { top } = scale;
  const x = (t) => pad.left + ((t - (now - span)) / span) * (width - pad.left - pad.right);
  const y = (v) => height - pad.bottom - (Math.min(v, top) / top) * (height - pad.top - pad.bottom);
  const nodes = [el('text', { class: 'unit', x: 0, y: 11 }, UNIT)];
  for (const v of scale.ticks) {
    const clip = scale.clipped && v === top;
    nodes.push(el('line', { class: clip ? 'grid clip' : 'grid', x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v) }));
    nodes.push(el('text', { x: pad.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, fmtTick(v, scale.step)));
  }
  const spanLabel = span < 120_000 ? `${Math.round(span / 1000)} s` : `${Math.round(span / 60_000)} min`;
  nodes.push(el('text', { x: pad.left, y: height - 4 }, `−${spanLabel}`));
  nodes.push(el('text', { x: width - pad.right, y: height - 4, 'text-anchor': 'end' }, 'now'));
  for (const s of SERIES) {
    const points = series.map((p) => `${x(p.t).toFixed(1)},${y(p[s.name]).toFixed(1)}`).join(' ');
    nodes.push(el('polyline', { class: `s-${s.name}`, points }));
  }
  // Above the scale: each run of clipped samples gets a mark at its highest, the window's peak a label.
  for (const s of SERIES) {
    for (const run of clippedRuns(series, s.name, top)) {
      const at = x(run.t);
      const mark = el('path', { class: `clip-mark s-${s.name}`, d: `M${at - 4},${pad.top - 2} L${at},${pad.top - 8} L${at + 4},${pad.top - 2} Z` });
      mark.append(el('title', {}, `${s.name} ${fmtRate(run.value)} ${UNIT}, above the scale`));
      nodes.push(mark);
    }
  }
  if (scale.clipped) {
    const at = Math.min(Math.max(x(scale.peakAt), pad.left + 60), width - pad.right - 60);
    nodes.push(el('text', { class: 'peak', x: at, y: 11, 'text-anchor': 'middle' }, `peak ${fmtRate(scale.peak)} ${UNIT} ▲`));
  }
  svg.replaceChildren(...nodes);
  $('legend').replaceChildren(...SERIES.map((s) => h('span', {}, h('i', { className: `s-${s.name}` }), s.name)));
}

/**
 * The y scale: the 95th percentile of the window's non-zero rates, so one burst does not
 * flatten the usual traffic; a peak not far above that is shown whole, a real outlier is clipped.
 */
function chartScale(series) {
  const values = [];
  let peak = 0;
  let peakAt = 0;
  for (const p of series) {
    for (const s of SERIES) {
      const v = p[s.name];
      if (v > 0) values.push(v);
      if (v > peak) [peak, peakAt] = [v, p.t];
    }
  }
  values.sort((a, b) => a - b);
  const p95 = values.length > 0 ? values[Math.min(values.length - 1, Math.floor(values.length * 0.95))] : 0;
  const wanted = peak <= 1.5 * p95 ? peak : 1.2 * p95;
  const { ticks, step } = niceTicks(Math.max(wanted, CHART_MIN_TOP));
  const top = ticks[ticks.length - 1];
  return { ticks, step, top, peak, peakAt, clipped: peak > top };
}

/** Round ticks from 0 to at least `max`: steps of 1, 2 or 5 × 10^n, 3 to 5 of them. */
function niceTicks(max) {
  const rough = max / 4;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= rough);
  const ticks = [];
  for (let i = 0; i * step < max + step / 2 && i <= 6; i += 1) ticks.push(Number((i * step).toPrecision(12)));
  if (ticks[ticks.length - 1] < max) ticks.push(Number((ticks.length * step).toPrecision(12)));
  return { ticks, step };
}

/** A tick label with only the decimals its step needs: 0, 50, 100 or 0, 0.5, 1; 1.5k past a thousand. */
function fmtTick(v, step) {
  if (v >= 1000 && step >= 100) return `${Number((v / 1000).toPrecision(3))}k`;
  const decimals = step >= 1 ? 0 : Math.ceil(-Math.log10(step));
  return v.toLocaleString('en-US', { maximumFractionDigits: decimals });
}

/** The runs of consecutive samples of `name` above `top`, each as its highest sample. */
function clippedRuns(series, name, top) {
  const runs = [];
  let run;
  for (const p of series) {
    if (p[name] <= top) {
      run = undefined;
    } else if (!run) {
      run = { t: p.t, value: p[name] };
      runs.push(run);
    } else if (p[name] > run.value) {
      [run.t, run.value] = [p.t, p[name]];
    }
  }
  return runs;
}

function renderQueues(list) {
  const filter = $('filter').value.trim().toLowerCase();
  const rows = list.queues
    .filter((q) => !filter || q.userId.toLowerCase().includes(filter))
    .map((q) =>
      h(
        'tr',
        { 'data-user': q.userId, className: q.userId === state.selected ? 'selected' : '', onclick: () => select(q.userId) },
        h('td', { className: 'mono' }, q.userId),
        h('td', { className: 'num', 'data-col': 'waiting' }, fmtNumber(q.waiting)),
        h('td', { className: 'num', 'data-col': 'inflight' }, fmtNumber(q.inflight)),
        h('td', { className: `num dead-count${q.dead > 0 ? ' nonzero' : ''}`, 'data-col': 'dead' }, fmtNumber(q.dead)),
        h('td', { className: 'num', 'data-col': 'connections' }, fmtNumber(q.connections)),
        h('td', { className: 'num' }, fmtAge(q.oldestAgeMs)),
      ),
    );
  $('queues').replaceChildren(...rows);
  $('queues-empty').hidden = list.queues.length > 0;
  $('queues-truncated').hidden = !list.truncated;
}

function select(userId) {
  state.selected = userId;
  for (const tr of $('queues').children) tr.classList.toggle('selected', tr.dataset.user === userId);
  $('d-user').textContent = userId;
  refresh();
}

function actionButton(label, onclick, danger) {
  return h('button', { type: 'button', className: `link${danger ? ' danger' : ''}`, onclick }, label);
}

function renderDetail(view) {
  $('detail-empty').hidden = view !== null;
  $('detail-body').hidden = view === null;
  if (view === null) {
    $('detail-empty').textContent = `User ${state.selected} has no queue.`;
    return;
  }
  $('d-user').textContent = view.userId;
  for (const k of ['waiting', 'inflight', 'scheduled', 'dead', 'connections']) $(`d-${k}`).textContent = fmtNumber(view[k]);
  // null when Web Push is off on this server.
  $('d-push').textContent = view.pushSubscriptions === null || view.pushSubscriptions === undefined ? 'off' : fmtNumber(view.pushSubscriptions);
  $('retry-all').disabled = view.dead === 0;
  const none = (cols, text) => h('tr', {}, h('td', { colspan: cols, className: 'muted' }, text));
  const inflight = view.inflightMessages.map((m) =>
    h(
      'tr',
      {},
      h('td', { className: 'mono' }, m.id),
      h('td', { className: 'num' }, m.deliveries > 0 ? h('span', { className: 'badge' }, m.deliveries) : m.deliveries),
      h('td', { className: 'num' }, m.attempts),
      h('td', { className: 'num' }, fmtAge(m.idleMs)),
      h('td', { className: 'num' }, actionButton('delete', () => deleteMessage(view.userId, m.id), true)),
    ),
  );
  $('d-inflight-rows').replaceChildren(...(inflight.length ? inflight : [none(5, 'nothing in flight')]));
  const now = Date.now();
  const waiting = view.oldestWaiting.map((m) =>
    h(
      'tr',
      {},
      h('td', { className: 'mono' }, m.id),
      h('td', {}, m.event),
      h('td', { className: 'data mono', title: preview(m.data) }, preview(m.data)),
      h('td', { className: 'num' }, fmtAge(now - Date.parse(m.enqueuedAt))),
      h('td', { className: 'num' }, actionButton('delete', () => deleteMessage(view.userId, m.id), true)),
    ),
  );
  $('d-waiting-rows').replaceChildren(...(waiting.length ? waiting : [none(5, 'nothing waiting')]));
  const dead = view.deadLetters.map((m) =>
    h(
      'tr',
      {},
      h('td', { className: 'mono' }, m.id),
      h('td', {}, m.event),
      h('td', { className: 'data mono', title: preview(m.data) }, preview(m.data)),
      h('td', {}, m.reason),
      h('td', { className: 'num' }, m.deliveries),
      h('td', { className: 'num' }, m.attempts),
      h('td', { className: 'num' }, actionButton('retry', () => retryDead(view.userId, [m.id]))),
    ),
  );
  $('d-dead-rows').replaceChildren(...(dead.length ? dead : [none(7, 'no dead letters')]));
}

// ---- actions ----------------------------------------------------------------

/** An inline confirmation (a modal <dialog>); resolves true on Confirm. */
function confirmAction(text, label) {
  const dialog = $('confirm');
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = label;
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true }));
}

let toastTimer;
function toast(text) {
  const el = $('toast');
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), 4000);
}

async function act(question, label, request, done) {
  if (!(await confirmAction(question, label))) return;
  try {
    done(await request());
  } catch (err) {
    toast(`Failed: ${err.message}`);
  }
  refresh();
}

function purge(userId) {
  return act(
    `Purge the queue of ${userId}? Every waiting, in-flight and dead message is deleted. This cannot be undone.`,
    'Purge',
    () => api(userPath(userId), { method: 'DELETE' }),
    (r) => toast(`Purged ${userId}: ${r.removed.waiting} waiting, ${r.removed.inflight} in flight, ${r.removed.dead} dead`),
  );
}

function retryDead(userId, ids) {
  const what = ids ? `dead letter ${ids[0]}` : 'every dead letter';
  return act(
    `Queue ${what} of ${userId} again? It gets a new event id and is delivered after what is waiting.`,
    'Retry',
    () => api(`${userPath(userId)}/dead/retry`, { method: 'POST', body: JSON.stringify(ids ? { ids } : {}) }),
    (r) => toast(`Retried ${r.retried} of ${userId}${r.queueFull ? ' (queue full, the rest stay dead)' : ''}`),
  );
}

function deleteMessage(userId, id) {
  return act(
    `Delete message ${id} of ${userId}? It will not be delivered (again).`,
    'Delete',
    () => api(`${userPath(userId)}/messages/${encodeURIComponent(id)}`, { method: 'DELETE' }),
    () => toast(`Deleted ${id}`),
  );
}

// ---- wiring -----------------------------------------------------------------

$('login-form').addEventListener('submit', (event) => {
  event.preventDefault();
  signIn($('key').value.trim());
});
$('signout').addEventListener('click', () => signOut());
$('purge').addEventListener('click', () => state.selected && purge(state.selected));
$('retry-all').addEventListener('click', () => state.selected && retryDead(state.selected));
$('filter').addEventListener('input', () => renderQueues(state.list));

if (state.key) signIn(state.key);
else showLogin();
