// georep's web console: the oVirt design's geo-replication views on the REST API.
// Plain JavaScript, no library, no build step. The token lives in sessionStorage (this
// browser tab's session only). Data is put in the page with textContent, never as HTML.
'use strict';

const TOKEN = 'georep.token';
const REFRESH_MS = 5000;
const HOUR = 3600;

// ---------------------------------------------------------------- small helpers

/** An element: h('td', {class: 'x', onclick: f}, 'text', child, ...). */
function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) {
    if (k === undefined || k === null || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}
const $ = (sel, root = document) => root.querySelector(sel);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const enc = encodeURIComponent;
/** A test of whether a view's data changed since it was last drawn: changed(data) is false when not. */
function changes() {
  let last = '';
  return (data) => {
    const seen = JSON.stringify(data);
    if (seen === last) return false;
    last = seen;
    return true;
  };
}

function fmtDuration(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return '-';
  if (s < 1) return s <= 0 ? '0 s' : `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
function fmtBytes(b) {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  for (b = Number(b) || 0; b >= 1024 && i < u.length - 1; i++) b /= 1024;
  return `${i ? b.toFixed(1) : Math.round(b)} ${u[i]}`;
}
const fmtCount = (n) => Math.round(Number(n || 0)).toLocaleString('en');
const fmtTime = (ms) => (ms ? new Date(ms).toLocaleString() : '-');
const plain = (v) => (v === undefined || v === null || v === '' ? '-' : String(v));

// ---------------------------------------------------------------- the API

class Refused extends Error {
  constructor(status, kind, message) {
    super(message);
    this.status = status;
    this.kind = kind;
  }
}

/** Calls the API; resolves to its JSON, or rejects with a Refused carrying the server's line. */
async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN) || ''}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let r;
  try {
    r = await fetch(`/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    connection(false);
    throw new Refused(0, 'unreachable', 'georepd cannot be reached');
  }
  const text = await r.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (e) {
    data = null;
  }
  if (r.status === 401) {
    logout('The token was refused: log in again (georep api-token prints it).');
    throw new Refused(401, 'unauthorized', 'the token was refused');
  }
  if (!r.ok) throw new Refused(r.status, data && data.error, (data && data.message) || text || r.statusText);
  return data;
}

const sessionPath = (vol, id) => `/volumes/${enc(vol)}/geo-replication-sessions/${enc(id)}`;

// ---------------------------------------------------------------- frame: toasts, connection, dialogs

let toastTimer = 0;
function toast(text, bad) {
  const t = $('#toast');
  t.textContent = text;
  t.className = bad ? 'toast bad' : 'toast';
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (t.hidden = true), bad ? 8000 : 4000);
}

let online = null;
function connection(up) {
  if (online === up) return;
  online = up;
  const c = $('#conn');
  c.className = up ? 'conn live' : 'conn lost';
  c.textContent = up ? 'Live' : 'Connection to georepd lost: retrying…';
  c.title = up ? 'Changes appear as they happen' : 'The page will catch up when georepd answers again';
}

/**
 * A modal form. `fields` are nodes; `submit(form)` runs on submit: if it throws, the error is
 * shown in the dialog (the server's own line) and the dialog stays open. Resolves to the
 * submit's result, or null when cancelled.
 */
function dialog({ title, fields, submitLabel = 'OK', danger = false, wide = false, submit, cancelLabel = 'Cancel' }) {
  const d = $('#dialog');
  d.className = wide ? 'wide' : '';
  d.replaceChildren();
  return new Promise((resolve) => {
    let result = null;
    const refusal = h('div', { class: 'refusal', role: 'alert', hidden: true });
    const ok = submitLabel ? h('button', { type: 'submit', class: danger ? 'danger' : 'primary' }, submitLabel) : null;
    const form = h(
      'form',
      { method: 'dialog', novalidate: true },
      h('header', {}, h('h2', { id: 'dialog-title' }, title)),
      h('div', { class: 'body' }, fields, refusal),
      h('footer', {}, h('button', { type: 'button', onclick: () => d.close() }, cancelLabel), ok),
    );
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (!submit) return d.close();
      refusal.hidden = true;
      form.querySelectorAll('button').forEach((b) => (b.disabled = true));
      try {
        result = (await submit(form)) ?? true;
        d.close();
      } catch (e) {
        refusal.textContent = e.message;
        refusal.hidden = false;
      } finally {
        form.querySelectorAll('button').forEach((b) => (b.disabled = false));
      }
    });
    d.addEventListener('close', () => resolve(result), { once: true });
    d.append(form);
    d.showModal();
    const first = form.querySelector('input, select, button[type=submit]');
    if (first) first.focus();
  });
}

function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, hint ? h('span', { class: 'hint' }, hint) : null);
}
function check(label, input) {
  input.id = input.id || `c-${Math.random().toString(36).slice(2, 9)}`;
  return h('div', { class: 'check' }, input, h('label', { for: input.id }, label));
}

// ---------------------------------------------------------------- charts

/**
 * A line chart of points [[t, v]] (t in seconds since the epoch) up to now: the last hour, or
 * less while there is less (at least 5 minutes), so that a new session's line is readable.
 */
function chart(title, points, fmt) {
  const W = 380, H = 150, L = 56, B = 18, T = 8;
  const now = Date.now() / 1000;
  const span = Math.min(HOUR, Math.max(300, points.length ? now - points[0][0] : 0));
  const x0 = now - span;
  const top = Math.max(...points.map((p) => p[1]), 0);
  const max = top > 0 ? top * 1.1 : 1;
  const x = (t) => L + ((t - x0) / span) * (W - L - 4);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const ns = 'http://www.w3.org/2000/svg';
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const last = points.length ? points[points.length - 1][1] : null;
  const svg = el('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${title}: ${last === null ? 'no data yet' : fmt(last)}` });
  for (let i = 0; i <= 3; i++) {
    const v = (max / 1.1) * (i / 3);
    svg.append(el('line', { class: 'grid', x1: L, x2: W, y1: y(v), y2: y(v) }));
    svg.append(el('text', { x: L - 4, y: y(v) + 3, 'text-anchor': 'end' }, fmt(v, true)));
  }
  const step = [1, 2, 5, 10, 15, 20, 30].find((m) => span / 60 / m <= 5) || 30;
  for (let m = 0; m * 60 <= span; m += step) {
    svg.append(el('text', { x: x(now - m * 60), y: H - 4, 'text-anchor': m === 0 ? 'end' : 'middle' }, m ? `-${m} min` : 'now'));
  }
  const shown = points.filter((p) => p[0] >= x0);
  if (shown.length) {
    const d = shown.map((p, i) => `${i ? 'L' : 'M'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join('');
    svg.append(el('path', { class: 'area', d: `${d}L${x(shown[shown.length - 1][0]).toFixed(1)},${y(0)}L${x(shown[0][0]).toFixed(1)},${y(0)}Z` }));
    svg.append(el('path', { class: 'line', d }));
  }
  return h('figure', { class: 'chart', 'data-chart': title }, h('figcaption', {}, `${title}: `, h('b', {}, last === null ? 'no data yet' : fmt(last))), svg);
}

// ---------------------------------------------------------------- lifecycle rules

const RUNNING = ['ACTIVE', 'PASSIVE', 'INITIALIZING', 'FAULTY', 'PARTIAL_FAULTY', 'UNKNOWN'];
/** Which actions a session in `status` allows (as the CLI's lifecycle rules do). */
function allowed(status) {
  return {
    start: status === 'NOTSTARTED' || status === 'STOPPED',
    stop: RUNNING.includes(status) || status === 'PAUSED',
    pause: RUNNING.includes(status),
    resume: status === 'PAUSED',
    remove: status === 'NOTSTARTED' || status === 'STOPPED',
    checkpoint: RUNNING.includes(status) || status === 'PAUSED',
    options: true,
    details: true,
  };
}

/** Runs an action on a session after asking where replication or data stops. */
async function sessionAction(vol, s, action) {
  const path = sessionPath(vol, s.id);
  const who = `${vol} → ${s.id}`;
  const run = async (method, p, done) => {
    const r = await api(method, p);
    toast((r && r.message) || done);
    refreshSoon();
  };
  try {
    if (action === 'stop') {
      const force = h('input', { type: 'checkbox', name: 'force' });
      await dialog({
        title: 'Stop geo-replication',
        fields: [h('p', {}, `Stop the session ${who}? Changes made on ${vol} will not reach ${s.id} until it is started again.`), check('Force (stop even if a node cannot be reached)', force)],
        submitLabel: 'Stop',
        danger: true,
        submit: () => run('POST', `${path}/stop${force.checked ? '?force=true' : ''}`, 'Stopped'),
      });
    } else if (action === 'remove') {
      const reset = h('input', { type: 'checkbox', name: 'reset_sync_time' });
      await dialog({
        title: 'Remove geo-replication session',
        fields: [
          h('p', {}, `Remove the session ${who}? Its configuration and progress are deleted; the files on ${s.id} stay.`),
          check('Reset the sync time (a new session to it starts with a full crawl)', reset),
        ],
        submitLabel: 'Remove',
        danger: true,
        submit: async () => {
          await run('DELETE', `${path}${reset.checked ? '?reset_sync_time=true' : ''}`, 'Removed');
          if (location.hash.includes('/sessions/')) location.hash = `#/volumes/${enc(vol)}`;
        },
      });
    } else if (action === 'checkpoint') {
      await run('POST', `${path}/checkpoint`, 'Checkpoint set');
    } else if (action === 'options') {
      await optionsDialog(vol, s);
    } else if (action === 'details') {
      location.hash = `#/volumes/${enc(vol)}/sessions/${enc(s.id)}`;
    } else {
      await run('POST', `${path}/${action}`, 'Done');
    }
  } catch (e) {
    toast(e.message, true);
  }
}

// ---------------------------------------------------------------- views

let view = null; // { refresh(): Promise }, the page shown
let refreshTimer = 0;
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => view && view.refresh().catch(() => {}), 250);
}

function page(title, crumbs) {
  const main = $('#main');
  main.replaceChildren();
  if (crumbs) main.append(h('div', { class: 'crumbs' }, crumbs));
  main.append(h('h1', {}, title));
  document.title = `${title} · georep`;
  return main;
}
function table(head, rows, empty) {
  if (!rows.length) return h('div', { class: 'empty' }, empty);
  return h('div', { class: 'scroll' }, h('table', {}, h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col' }, c)))), h('tbody', {}, rows)));
}
const badge = (s) => h('span', { class: `badge ${s}` }, String(s).replace('_', ' '));

function loginView(message) {
  view = null;
  $('#nav').hidden = true;
  $('#logout').hidden = true;
  const main = $('#main');
  main.replaceChildren();
  document.title = 'Log in · georep';
  const input = h('input', { type: 'password', name: 'token', autocomplete: 'current-password', required: true });
  const error = h('p', { class: 'error', role: 'alert' }, message || '');
  const form = h(
    'form',
    { class: 'panel' },
    h('h1', {}, 'georep'),
    h('p', {}, 'Log in with this node\'s API token (', h('code', {}, 'georep api-token'), ' prints it). It is kept for this browser tab only.'),
    field('API token', input),
    error,
    h('button', { type: 'submit', class: 'primary' }, 'Log in'),
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN, input.value.trim());
    try {
      await api('GET', '/volumes');
      if (!location.hash || location.hash === '#/login') location.hash = '#/volumes';
      else route();
    } catch (e) {
      if (e.status !== 401) error.textContent = e.message;
    }
  });
  main.append(h('div', { class: 'login' }, form));
  input.focus();
}

function logout(message) {
  sessionStorage.removeItem(TOKEN);
  stopStream();
  if (location.hash !== '#/login') history.replaceState(null, '', '#/login');
  loginView(message);
}

// Volumes: every volume with its status and its sessions at a glance.
async function volumesView() {
  const main = page('Volumes');
  const body = h('div', { class: 'panel' });
  const changed = changes();
  main.append(body);
  view = {
    async refresh() {
      const vols = await api('GET', '/volumes');
      const sessions = await Promise.all(vols.map((v) => api('GET', `/volumes/${enc(v.name)}/geo-replication-sessions`).catch(() => [])));
      if (!changed([vols, sessions])) return;
      const rows = vols.map((v, i) =>
        h(
          'tr',
          {},
          h('td', {}, h('a', { href: `#/volumes/${enc(v.name)}` }, v.name)),
          h('td', {}, badge(v.status)),
          h('td', {}, v.replica > 1 ? `replica ${v.replica}` : 'distribute'),
          h('td', { class: 'wrap' }, v.bricks.map((b) => `${b[0]}:${b[1]}`).join(', ')),
          h('td', {}, sessions[i].length ? sessions[i].map((s) => h('span', {}, badge(s.status), ` ${s.id} `)) : '-'),
        ),
      );
      body.replaceChildren(table(['Name', 'Status', 'Type', 'Bricks', 'Geo-replication'], rows, 'No volumes yet: georep volume create NAME NODE:/BRICK'));
    },
  };
  await view.refresh();
}

// A volume: its Geo-Replication Sessions sub-tab (the design's list and actions) and general facts.
async function volumeView(vol) {
  const main = page(vol, [h('a', { href: '#/volumes' }, 'Volumes'), ' / ', vol]);
  let tab = 'sessions';
  let selected = null;
  const changed = changes();
  let sessions = [];
  let volume = null;
  const tabs = h('div', { class: 'tabs', role: 'tablist' });
  const panel = h('div', { role: 'tabpanel' });
  main.append(h('div', { class: 'panel' }, tabs, panel));
  const actions = ['New', 'Remove', 'Start', 'Stop', 'Pause', 'Resume', 'Options', 'View Details', 'Checkpoint'];
  const key = (a) => (a === 'View Details' ? 'details' : a.toLowerCase());
  const buttons = Object.fromEntries(actions.map((a) => [key(a), h('button', { type: 'button', 'data-action': key(a) }, a)]));
  buttons.new.addEventListener('click', () => newSessionDialog(vol));
  for (const a of actions.slice(1)) {
    buttons[key(a)].addEventListener('click', () => {
      const s = sessions.find((x) => x.id === selected);
      if (s) sessionAction(vol, s, key(a));
    });
  }
  const tbody = h('tbody');
  function renderTabs() {
    tabs.replaceChildren(
      ...[
        ['sessions', 'Geo-Replication Sessions'],
        ['general', 'General'],
      ].map(([k, label]) =>
        h('button', { role: 'tab', type: 'button', 'aria-selected': String(tab === k), onclick: () => ((tab = k), render()) }, label),
      ),
    );
  }
  function render() {
    renderTabs();
    if (tab === 'general') {
      panel.replaceChildren(
        volume
          ? h(
              'div',
              { class: 'facts' },
              h('div', {}, h('span', { class: 'k' }, 'Status'), badge(volume.status)),
              h('div', {}, h('span', { class: 'k' }, 'ID'), h('code', {}, volume.id)),
              h('div', {}, h('span', { class: 'k' }, 'Replica'), h('b', {}, volume.replica)),
              h('div', {}, h('span', { class: 'k' }, 'Bricks'), h('code', {}, volume.bricks.map((b) => `${b[0]}:${b[1]}`).join(' '))),
            )
          : h('div', { class: 'empty' }, '…'),
      );
      return;
    }
    const focused = document.activeElement && document.activeElement.dataset && document.activeElement.dataset.session;
    const s = sessions.find((x) => x.id === selected);
    const can = s ? allowed(s.status) : {};
    for (const [k, b] of Object.entries(buttons)) b.disabled = k !== 'new' && !can[k];
    tbody.replaceChildren(
      ...sessions.map((x) => {
        const last = x.bricks.map((b) => b.last_synced).filter((t) => t && t !== 'N/A').sort()[0];
        const tr = h(
          'tr',
          { class: 'selectable', tabindex: '0', 'aria-selected': String(x.id === selected), 'data-session': x.id },
          h('td', {}, x.secondary_host),
          h('td', {}, x.secondary_volume),
          h('td', {}, x.secondary_user || 'root'),
          h('td', {}, badge(x.status)),
          h('td', {}, fmtDuration(x.lag_seconds)),
          h('td', {}, plain(last)),
        );
        const pick = () => ((selected = x.id), render());
        tr.addEventListener('click', pick);
        tr.addEventListener('dblclick', () => sessionAction(vol, x, 'details'));
        tr.addEventListener('keydown', (ev) => {
          if (ev.key === ' ') (ev.preventDefault(), pick());
          if (ev.key === 'Enter') sessionAction(vol, x, 'details');
        });
        return tr;
      }),
    );
    const list = sessions.length
      ? h('div', { class: 'scroll' }, h('table', { 'aria-label': 'Geo-replication sessions' }, h('thead', {}, h('tr', {}, ['Destination Host', 'Destination Volume', 'User', 'Status', 'Lag', 'Last Synced'].map((c) => h('th', { scope: 'col' }, c)))), tbody))
      : h('div', { class: 'empty' }, `No geo-replication session of ${vol} yet: New creates one.`);
    panel.replaceChildren(h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': 'Session actions' }, Object.values(buttons)), list);
    if (focused) {
      const again = panel.querySelector(`tr[data-session="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
  }
  view = {
    async refresh() {
      const got = await Promise.all([api('GET', `/volumes/${enc(vol)}`), api('GET', `/volumes/${enc(vol)}/geo-replication-sessions`)]);
      if (!changed(got)) return;
      [volume, sessions] = got;
      if (!sessions.some((x) => x.id === selected)) selected = sessions.length === 1 ? sessions[0].id : null;
      render();
    },
  };
  await view.refresh();
}

// The New session dialog: destination (known or new), eligible volumes, user, port, auto-start.
async function newSessionDialog(vol) {
  let dests = [];
  try {
    dests = await api('GET', '/destinations');
  } catch (e) {
    return toast(e.message, true);
  }
  const dest = h('select', { name: 'destination' }, dests.map((d) => h('option', { value: d.host }, `${d.user}@${d.host}:${d.port}`)), h('option', { value: '' }, 'A new host…'));
  const host = h('input', { type: 'text', name: 'host', autocomplete: 'off', placeholder: 'snode.example' });
  const user = h('input', { type: 'text', name: 'user', value: 'root', autocomplete: 'off' });
  const port = h('input', { type: 'number', name: 'port', value: '22', min: '1', max: '65535' });
  const pushKeys = h('input', { type: 'checkbox', name: 'push_keys', checked: true });
  const newHost = h('fieldset', {}, h('legend', {}, 'New destination'), field('Host', host), field('User', user, 'The account sessions reach it as (an unprivileged one on a mountbroker node).'), field('SSH port', port), check('Copy this cluster\'s public keys to the destination', pushKeys));
  const volSelect = h('select', { name: 'volume' });
  const volText = h('input', { type: 'text', name: 'volume_name', placeholder: 'or type a volume name', autocomplete: 'off' });
  const eligibleOnly = h('input', { type: 'checkbox', name: 'eligible', checked: true });
  const force = h('input', { type: 'checkbox', name: 'force' });
  const pushPem = h('input', { type: 'checkbox', name: 'push_pem', checked: true });
  const autoStart = h('input', { type: 'checkbox', name: 'auto_start', checked: true });
  const probe = h('div', { class: 'hint', role: 'status' });
  let found = [];
  // What a destination volume needs to receive this one (the checks create makes); unknown
  // on a node without the volume's brick, and then not filtered on.
  let need = null;
  const needHint = h('div', { class: 'hint', 'data-fact': 'needs' });
  api('GET', `/volumes/${enc(vol)}/capacity`)
    .then((c) => {
      need = c;
      needHint.textContent = `Big enough: ${fmtBytes(c.secondary_total_bytes)} in all and ${fmtBytes(c.secondary_avail_bytes)} free (${vol} holds ${fmtBytes(c.used_bytes)}).`;
      showVolumes();
    })
    .catch(() => {});
  const bigEnough = (v) => !need || (v.total_bytes >= need.secondary_total_bytes && v.avail_bytes >= need.secondary_avail_bytes);
  const showVolumes = () => {
    const ok = (v) => v.started && ((v.empty && bigEnough(v)) || force.checked);
    const list = eligibleOnly.checked ? found.filter(ok) : found;
    const facts = (v) => [v.started ? null : 'not started', v.empty ? 'empty' : 'not empty', `${fmtBytes(v.avail_bytes)} free of ${fmtBytes(v.total_bytes)}`, bigEnough(v) ? null : 'too small'].filter(Boolean).join(', ');
    volSelect.replaceChildren(...list.map((v) => h('option', { value: v.name }, `${v.name} (${facts(v)})`)));
    if (!list.length) volSelect.append(h('option', { value: '' }, found.length ? 'no eligible volume' : '-'));
  };
  const testDest = async (name) => {
    found = [];
    showVolumes();
    if (!name) return;
    probe.textContent = `Asking ${name} for its volumes…`;
    try {
      const r = await api('POST', `/destinations/${enc(name)}/test`);
      found = r.volumes || [];
      const bad = r.stages.find((s) => !s.ok);
      probe.textContent = bad ? `${bad.stage}: ${bad.detail}` : `${found.length} volume(s) on ${name}`;
    } catch (e) {
      probe.textContent = e.message;
    }
    showVolumes();
  };
  const syncDest = () => {
    newHost.hidden = dest.value !== '';
    testDest(dest.value);
  };
  dest.addEventListener('change', syncDest);
  eligibleOnly.addEventListener('change', showVolumes);
  force.addEventListener('change', showVolumes);
  syncDest();
  const fields = [
    field('Destination host', dest),
    newHost,
    field('Destination volume', volSelect),
    volText,
    probe,
    check('Show only eligible volumes (started; unless forced, empty and big enough)', eligibleOnly),
    needHint,
    check('Create the session\'s keys on the destination (push-pem)', pushPem),
    check('Force (create even if the destination volume is not empty or smaller)', force),
    check('Start the session once created', autoStart),
  ];
  await dialog({
    title: `New geo-replication session of ${vol}`,
    fields,
    submitLabel: 'Create',
    submit: async () => {
      let d = dests.find((x) => x.host === dest.value);
      if (!d) {
        if (!host.value.trim()) throw new Error('host: give the destination host');
        const p = Number(port.value) || 22;
        await api('POST', '/destinations', { host: host.value.trim(), port: p, user: user.value.trim() || 'root', push_keys: pushKeys.checked });
        d = { host: host.value.trim(), user: user.value.trim() || 'root', port: p };
        dests.push(d);
        dest.prepend(h('option', { value: d.host }, `${d.user}@${d.host}:${d.port}`));
        dest.value = d.host;
        syncDest();
      }
      const name = volText.value.trim() || volSelect.value;
      if (!name) throw new Error('volume: choose the destination volume (or type its name)');
      const secondary = `${d.user && d.user !== 'root' ? `${d.user}@` : ''}${d.host}::${name}`;
      const r = await api('POST', `/volumes/${enc(vol)}/geo-replication-sessions`, { secondary, push_pem: pushPem.checked, force: force.checked, ssh_port: d.port });
      let said = (r && r.message) || 'Created';
      if (autoStart.checked) {
        try {
          const s = await api('POST', `${sessionPath(vol, secondary)}/start`);
          said = (s && s.message) || said;
        } catch (e) {
          toast(`Created, but not started: ${e.message}`, true);
          refreshSoon();
          return true;
        }
      }
      toast(said);
      refreshSoon();
      return true;
    },
  });
}

// The Options dialog: every option with value, default, allowed values and description.
async function optionsDialog(vol, s) {
  const path = `${sessionPath(vol, s.id)}/options`;
  const rows = h('tbody');
  const load = async () => {
    const opts = await api('GET', path);
    rows.replaceChildren(
      ...opts.map((o) => {
        const input = h('input', { type: 'text', value: o.value, 'aria-label': `${o.name} value`, name: o.name });
        const err = h('div', { class: 'error', role: 'alert' });
        const save = h('button', { type: 'button', 'data-save': o.name, 'aria-label': `Set ${o.name}` }, 'Set');
        const reset = h('button', { type: 'button', 'data-reset': o.name, 'aria-label': `Reset ${o.name}`, disabled: o.value === o.default }, 'Reset');
        const act = async (method, body) => {
          err.textContent = '';
          try {
            await api(method, `${path}/${enc(o.name)}`, body);
            toast(method === 'PUT' ? `${o.name} set to ${input.value}` : `${o.name} reset to ${o.default}`);
            await load();
          } catch (e) {
            err.textContent = e.message;
          }
        };
        save.addEventListener('click', () => act('PUT', { value: input.value }));
        reset.addEventListener('click', () => act('DELETE'));
        input.addEventListener('keydown', (ev) => ev.key === 'Enter' && (ev.preventDefault(), act('PUT', { value: input.value })));
        return h(
          'tr',
          { 'data-option': o.name },
          h('th', { scope: 'row' }, h('code', {}, o.name)),
          h('td', {}, input, err),
          h('td', {}, h('code', {}, plain(o.default))),
          h('td', {}, h('code', {}, plain(o.allowed))),
          h('td', { class: 'wrap' }, o.description),
          h('td', {}, save, ' ', reset),
        );
      }),
    );
  };
  try {
    await load();
  } catch (e) {
    return toast(e.message, true);
  }
  await dialog({
    title: `Options of ${vol} → ${s.id}`,
    wide: true,
    fields: [h('div', { class: 'scroll opts' }, h('table', {}, h('thead', {}, h('tr', {}, ['Option', 'Value', 'Default', 'Allowed', 'Description', ''].map((c) => h('th', { scope: 'col' }, c)))), rows))],
    submitLabel: null,
    cancelLabel: 'Close',
  });
  refreshSoon();
}

// Session details: the bricks, the Faulty reason, graphs, Hybrid crawl progress, failures.
async function sessionView(vol, id) {
  const main = page(`${vol} → ${id}`, [h('a', { href: '#/volumes' }, 'Volumes'), ' / ', h('a', { href: `#/volumes/${enc(vol)}` }, vol), ' / ', id]);
  const path = sessionPath(vol, id);
  let samples = [];
  const changed = changes();
  const seenCrawl = new Map(); // brick -> [first time, first entries]
  const head = h('div');
  const toolbar = h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': 'Session actions' });
  const facts = h('div', { class: 'facts' });
  const progress = h('div', { class: 'progress' });
  const charts = h('div', { class: 'charts' });
  const bricks = h('div');
  const failures = h('div');
  main.append(
    head,
    h('div', { class: 'panel' }, toolbar, facts, progress),
    h('section', { class: 'panel', 'aria-label': 'Graphs' }, h('h2', {}, 'History (the last hour at most)'), charts),
    h('section', { class: 'panel' }, h('h2', {}, 'Bricks'), bricks),
    h('section', { class: 'panel' }, h('h2', {}, 'Failures'), failures),
  );
  let s = null;
  const acts = ['start', 'stop', 'pause', 'resume', 'checkpoint', 'options', 'remove'];
  const buttons = Object.fromEntries(acts.map((a) => [a, h('button', { type: 'button', 'data-action': a, onclick: () => s && sessionAction(vol, s, a) }, a[0].toUpperCase() + a.slice(1))]));
  toolbar.append(...Object.values(buttons));
  view = {
    async refresh() {
      const after = samples.length ? samples[samples.length - 1].t : 0;
      const [session, more, failed] = await Promise.all([api('GET', path), api('GET', `${path}/samples?after=${after}`), api('GET', `${path}/failures`)]);
      s = session;
      samples = samples.concat(more).filter((p) => p.t >= Date.now() / 1000 - HOUR);
      // Only what changed is drawn again: the graphs when samples came, the rest when the
      // session or its failures did (an idle page costs the browser next to nothing).
      if (more.length || !charts.hasChildNodes()) {
        const pts = (f) => samples.map((p) => [p.t, Number(p[f])]);
        charts.replaceChildren(chart('Lag', pts('lag_seconds'), fmtDuration), chart('Files synced', pts('files_synced'), fmtCount), chart('Bytes synced', pts('bytes_synced'), fmtBytes));
      }
      if (!changed([session, failed])) return;
      const can = allowed(s.status);
      for (const [a, b] of Object.entries(buttons)) b.disabled = !can[a];
      const faulty = s.bricks.filter((b) => b.worker_status === 'Faulty');
      head.replaceChildren(
        ...faulty.map((b) => h('p', { class: 'reason', role: 'alert' }, h('b', {}, `Faulty on ${b.primary_node}:${b.primary_brick}: `), b.last_error || 'the worker stopped; no reason was recorded')),
        ...s.bricks.filter((b) => b.note).map((b) => h('p', { class: 'note' }, `${b.primary_node}:${b.primary_brick}: ${b.note}`)),
      );
      const sum = (f) => s.bricks.reduce((a, b) => a + Number(b[f] || 0), 0);
      facts.replaceChildren(
        ...[
          ['Status', badge(s.status)],
          ['Lag', h('b', { 'data-fact': 'lag' }, fmtDuration(s.lag_seconds))],
          ['Files synced', h('b', { 'data-fact': 'files' }, fmtCount(sum('files_synced')))],
          ['Bytes synced', h('b', { 'data-fact': 'bytes' }, fmtBytes(sum('bytes_synced')))],
          ['Pending', h('b', {}, `${fmtBytes(sum('bytes_pending'))}, ${fmtCount(sum('deletes_pending'))} deletes`)],
          ['Failures', h('b', { 'data-fact': 'failures' }, fmtCount(failed.length))],
          ['Destination', h('code', {}, s.secondary)],
        ].map(([k, v]) => h('div', {}, h('span', { class: 'k' }, k), v)),
      );
      // A Hybrid crawl's progress, with an estimate from the rate seen on this page.
      const crawling = s.bricks.filter((b) => b.crawl_status === 'Hybrid Crawl' && b.crawl_total > 0);
      progress.replaceChildren(
        ...crawling.map((b) => {
          const now = Date.now() / 1000;
          if (!seenCrawl.has(b.primary_brick)) seenCrawl.set(b.primary_brick, [now, b.crawl_entries]);
          const [t0, e0] = seenCrawl.get(b.primary_brick);
          const rate = now > t0 + 1 ? (b.crawl_entries - e0) / (now - t0) : 0;
          const left = Math.max(0, b.crawl_total - b.crawl_entries);
          const eta = rate > 0 ? `, about ${fmtDuration(left / rate)} left` : '';
          const pct = Math.min(100, (100 * b.crawl_entries) / b.crawl_total);
          return h('div', {}, h('label', {}, `Hybrid crawl of ${b.primary_brick}: ${fmtCount(b.crawl_entries)} of about ${fmtCount(b.crawl_total)} entries (${pct.toFixed(0)}%${eta})`), h('progress', { max: '100', value: pct.toFixed(1) }));
        }),
      );
      bricks.replaceChildren(
        table(
          ['Node', 'Brick', 'Status', 'Crawl status', 'Last synced', 'Entry', 'Data', 'Meta', 'Failures', 'Checkpoint time', 'Checkpoint completed', 'Completion time', 'Secondary node'],
          s.bricks.map((b) =>
            h(
              'tr',
              { 'data-brick': b.primary_brick },
              h('td', {}, b.primary_node),
              h('td', {}, h('code', {}, b.primary_brick)),
              h('td', {}, badge(b.worker_status)),
              h('td', {}, plain(b.crawl_status)),
              h('td', {}, plain(b.last_synced)),
              h('td', {}, plain(b.entry)),
              h('td', {}, plain(b.data)),
              h('td', {}, plain(b.meta)),
              h('td', {}, plain(b.failures)),
              h('td', {}, plain(b.checkpoint_time)),
              h('td', { 'data-checkpoint': b.checkpoint_completed }, plain(b.checkpoint_completed)),
              h('td', {}, plain(b.checkpoint_completion_time)),
              h('td', {}, plain(b.secondary_node)),
            ),
          ),
          'No brick rows',
        ),
      );
      const retryAll = h('button', { type: 'button', 'data-retry': 'all', disabled: !failed.length }, 'Retry all');
      retryAll.addEventListener('click', () => retry(`${path}/failures/retry`));
      failures.replaceChildren(
        h('div', { class: 'toolbar' }, retryAll),
        table(
          ['Path', 'GFID', 'Operation', 'Error', 'Attempts', 'First seen', 'Last seen', ''],
          failed.map((f) =>
            h(
              'tr',
              { 'data-gfid': f.gfid },
              h('td', { class: 'wrap' }, plain(f.path)),
              h('td', {}, h('code', {}, f.gfid)),
              h('td', {}, plain(f.op)),
              h('td', { class: 'wrap' }, plain(f.error)),
              h('td', {}, plain(f.attempts)),
              h('td', {}, fmtTime(f.first_seen_ms)),
              h('td', {}, fmtTime(f.last_seen_ms)),
              h('td', {}, h('button', { type: 'button', 'data-retry': f.gfid, onclick: () => retry(`${path}/failures/${enc(f.gfid)}/retry`) }, 'Retry')),
            ),
          ),
          'Nothing failed: every change reached the secondary.',
        ),
      );
    },
  };
  const retry = async (p) => {
    try {
      const r = await api('POST', p);
      toast((r && r.message) || 'Sent again');
    } catch (e) {
      toast(e.message, true);
    }
    refreshSoon();
  };
  await view.refresh();
}

// Destinations: the secondary hosts, their pinned fingerprints and connection status.
async function destinationsView() {
  const main = page('Destinations');
  let dests = [];
  let selected = null;
  const changed = changes();
  const toolbar = h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': 'Destination actions' });
  const list = h('div');
  main.append(h('div', { class: 'panel' }, toolbar, list));
  const b = {
    new: h('button', { type: 'button', 'data-action': 'new', onclick: () => newDestination() }, 'New'),
    test: h('button', { type: 'button', 'data-action': 'test', onclick: () => testDestination(selected) }, 'Test'),
    reestablish: h('button', { type: 'button', 'data-action': 're-establish', onclick: () => reestablish(selected) }, 'Re-establish'),
    remove: h('button', { type: 'button', 'data-action': 'remove', onclick: () => removeDestination(selected) }, 'Remove'),
  };
  toolbar.append(...Object.values(b));
  function render() {
    for (const k of ['test', 'reestablish', 'remove']) b[k].disabled = !selected;
    list.replaceChildren(
      table(
        ['Host', 'User', 'Port', 'Fingerprint', 'Status', 'Sessions'],
        dests.map((d) => {
          const tr = h(
            'tr',
            { class: 'selectable', tabindex: '0', 'aria-selected': String(d.host === selected), 'data-host': d.host },
            h('td', {}, d.host),
            h('td', {}, d.user),
            h('td', {}, d.port),
            h('td', {}, h('code', {}, d.fingerprint)),
            h('td', { class: 'wrap' }, badge(d.status === 'Connected' ? 'Connected' : d.status.startsWith('Failed') ? 'failed' : 'idle'), ' ', d.status === 'Connected' ? '' : d.status),
            h('td', { class: 'wrap' }, d.sessions.join(', ') || '-'),
          );
          const pick = () => ((selected = d.host), render());
          tr.addEventListener('click', pick);
          tr.addEventListener('keydown', (ev) => (ev.key === ' ' || ev.key === 'Enter') && (ev.preventDefault(), pick()));
          return tr;
        }),
        'No destinations yet: New adds a secondary host (its SSH host key is pinned).',
      ),
    );
  }
  async function newDestination() {
    const host = h('input', { type: 'text', name: 'host', autocomplete: 'off' });
    const user = h('input', { type: 'text', name: 'user', value: 'root', autocomplete: 'off' });
    const port = h('input', { type: 'number', name: 'port', value: '22', min: '1', max: '65535' });
    const push = h('input', { type: 'checkbox', name: 'push_keys' });
    await dialog({
      title: 'New geo-replication destination',
      fields: [field('Host', host), field('User', user, 'The account sessions reach it as.'), field('SSH port', port), check('Copy this cluster\'s public keys to the destination (needs your own SSH access to it)', push), h('p', { class: 'hint' }, 'Its SSH host key is pinned now; a changed key later stops the sessions to it until you re-establish.')],
      submitLabel: 'Add',
      submit: async () => {
        const r = await api('POST', '/destinations', { host: host.value.trim(), user: user.value.trim(), port: Number(port.value) || 0, push_keys: push.checked });
        toast((r && r.message) || 'Added');
        selected = host.value.trim();
        refreshSoon();
      },
    });
  }
  async function testDestination(hostName) {
    let r;
    try {
      r = await api('POST', `/destinations/${enc(hostName)}/test`);
    } catch (e) {
      return toast(e.message, true);
    }
    await dialog({
      title: `Test of ${hostName}: ${r.ok ? 'passed' : 'failed'}`,
      fields: [
        h('ol', { class: 'stages', 'aria-label': 'Stages' }, r.stages.map((st) => h('li', { class: st.ok ? 'ok' : 'failed', 'data-stage': st.stage }, h('b', {}, st.stage), `: ${st.detail}`))),
        r.volumes && r.volumes.length ? h('p', {}, `Volumes: ${r.volumes.map((v) => `${v.name} (${fmtBytes(v.avail_bytes)} free)`).join(', ')}`) : null,
      ],
      submitLabel: null,
      cancelLabel: 'Close',
    });
    refreshSoon();
  }
  async function reestablish(hostName) {
    try {
      const r = await api('POST', `/destinations/${enc(hostName)}/re-establish`, {});
      toast((r && r.message) || 'Unchanged');
      return refreshSoon();
    } catch (e) {
      const m = /pinned (\S+), now (\S+?)\./.exec(e.message);
      if (!m) return toast(e.message, true);
      await dialog({
        title: `The host key of ${hostName} changed`,
        fields: [
          h('p', {}, 'Sessions to this host stop until its new key is accepted. Accept it only if you know why it changed (a reinstalled host, new keys).'),
          h('dl', {}, h('dt', {}, 'Pinned'), h('dd', {}, h('code', { 'data-fingerprint': 'old' }, m[1])), h('dt', {}, 'Now'), h('dd', {}, h('code', { 'data-fingerprint': 'new' }, m[2]))),
        ],
        submitLabel: `Accept ${m[2]}`,
        danger: true,
        submit: async () => {
          const r = await api('POST', `/destinations/${enc(hostName)}/re-establish`, { accept: m[2] });
          toast((r && r.message) || 'Accepted');
          refreshSoon();
        },
      });
    }
  }
  async function removeDestination(hostName) {
    const force = h('input', { type: 'checkbox', name: 'force' });
    await dialog({
      title: 'Remove destination',
      fields: [h('p', {}, `Remove ${hostName}? Its pinned host key is forgotten.`), check('Force (even while sessions use it)', force)],
      submitLabel: 'Remove',
      danger: true,
      submit: async () => {
        const r = await api('DELETE', `/destinations/${enc(hostName)}${force.checked ? '?force=true' : ''}`);
        toast((r && r.message) || 'Removed');
        selected = null;
        refreshSoon();
      },
    });
  }
  view = {
    async refresh() {
      const got = await api('GET', '/destinations');
      if (!changed(got)) return;
      dests = got;
      if (!dests.some((d) => d.host === selected)) selected = null;
      render();
    },
  };
  await view.refresh();
}

// ---------------------------------------------------------------- the event stream

// EventSource cannot send the token, so the stream is read through fetch: the same SSE,
// parsed here; on a lost connection it comes back with the last id seen (the server replays
// what was missed), and the page refreshes.
//
// A browser keeps at most six connections to one server, and a stream holds one for good:
// so one tab of the browser (the holder of a Web Lock) reads the stream and tells the others
// through a BroadcastChannel; when it closes, another takes over. Without those APIs, each
// tab reads its own.
let streamAbort = null;
let lastEventId = '';
let holder = false;
const channel = 'BroadcastChannel' in window ? new BroadcastChannel('georep-events') : null;
if (channel) {
  channel.onmessage = (m) => {
    const d = m.data || {};
    if (d.type === 'event') refreshSoon();
    if (d.type === 'conn' && !holder) {
      if (d.up && online === false) refreshSoon();
      connection(d.up);
    }
    if (d.type === 'ask' && holder && online !== null) channel.postMessage({ type: 'conn', up: online });
  };
}
function live(up) {
  connection(up);
  if (holder && channel) channel.postMessage({ type: 'conn', up });
}
function stopStream() {
  if (streamAbort) streamAbort.abort();
  streamAbort = null;
}
function stream() {
  stopStream();
  const ctl = new AbortController();
  streamAbort = ctl;
  if (channel && navigator.locks) {
    channel.postMessage({ type: 'ask' });
    navigator.locks
      .request('georep-event-stream', { signal: ctl.signal }, async () => {
        holder = true;
        try {
          await readStream(ctl);
        } finally {
          holder = false;
        }
      })
      .catch(() => {});
  } else {
    readStream(ctl);
  }
}
async function readStream(ctl) {
  let backoff = 1000;
  while (!ctl.signal.aborted) {
    try {
      const q = lastEventId ? `?after=${enc(lastEventId)}` : '';
      const r = await fetch(`/api/v1/events${q}`, { headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN) || ''}`, Accept: 'text/event-stream' }, signal: ctl.signal });
      if (r.status === 401) return logout('The token was refused: log in again.');
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      const wasDown = online === false;
      live(true);
      backoff = 1000;
      if (wasDown) refreshSoon();
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let ev = null;
          for (const line of block.split('\n')) {
            if (line.startsWith('id:')) lastEventId = line.slice(3).trim();
            if (line.startsWith('event:')) ev = line.slice(6).trim();
          }
          if (ev) {
            refreshSoon();
            if (channel) channel.postMessage({ type: 'event', event: ev });
          }
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    live(false);
    await sleep(backoff);
    backoff = Math.min(backoff * 2, 8000);
  }
}

// ---------------------------------------------------------------- routing

async function route() {
  if (!sessionStorage.getItem(TOKEN)) return loginView();
  $('#nav').hidden = false;
  $('#logout').hidden = false;
  if (!streamAbort) stream();
  const hash = location.hash || '#/volumes';
  const dec = decodeURIComponent;
  let m;
  for (const a of document.querySelectorAll('#nav a')) a.removeAttribute('aria-current');
  const mark = (v) => $(`#nav a[data-view="${v}"]`).setAttribute('aria-current', 'page');
  try {
    if ((m = /^#\/volumes\/([^/]+)\/sessions\/([^/]+)$/.exec(hash))) (mark('volumes'), await sessionView(dec(m[1]), dec(m[2])));
    else if ((m = /^#\/volumes\/([^/]+)$/.exec(hash))) (mark('volumes'), await volumeView(dec(m[1])));
    else if (hash === '#/destinations') (mark('destinations'), await destinationsView());
    else (mark('volumes'), await volumesView());
    $('#main').focus({ preventScroll: true });
  } catch (e) {
    if (e.status === 401) return;
    $('#main').append(h('p', { class: 'refusal', role: 'alert' }, e.message));
  }
}

window.addEventListener('hashchange', route);
window.addEventListener('DOMContentLoaded', () => {
  $('#logout').addEventListener('click', () => logout('Logged out.'));
  fetch('/api/v1/health')
    .then((r) => r.json())
    .then((r) => ($('#node').textContent = r.message.replace(/ is up$/, '')))
    .catch(() => {});
  route();
  // Numbers that move without events (lag, counts) are read again every few seconds while
  // the page is visible; a failed refresh marks the connection lost.
  setInterval(() => {
    if (view && document.visibilityState === 'visible' && !$('#dialog').open) view.refresh().catch(() => {});
  }, REFRESH_MS);
});
