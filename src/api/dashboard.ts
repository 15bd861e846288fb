// The dashboard: one page served by rportd at /, with no build step. It logs in through the API
// (POST /api/v1/login), then follows /api/v1/events (server-sent events) so the clients table is live.
// The page has no inline script or style: the Content-Security-Policy allows only these files of its own.
import { COMMANDS_CSS, COMMANDS_HTML } from './dashboard-commands.js';
import { DOM_HELPERS } from './dashboard-dom.js';

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rportd</title>
<link rel="stylesheet" href="/dashboard.css">
</head>
<body>
<div id="login" class="card" hidden>
  <h2>rportd</h2>
  <form id="login-form">
    <label>User <input name="username" autocomplete="username" required></label>
    <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
    <button type="submit">Log in</button>
    <div class="error" id="login-error"></div>
  </form>
</div>
<div id="app" hidden>
  <header>
    <h1>rportd</h1>
    <span class="meta" id="status"></span>
    <span class="live" id="live">connecting...</span>
    <button class="ghost" id="logout" type="button">Log out</button>
  </header>
  <main>
    <section class="card">
      <table>
        <thead><tr><th>Client</th><th>Status</th><th>Last seen</th><th>Round trip</th><th>Tags</th><th>Watchdog</th><th>Restarts (24h)</th><th>Tunnels</th></tr></thead>
        <tbody id="clients"></tbody>
      </table>
      <div class="empty" id="no-clients" hidden>No clients yet. Start an rport client pointed at this server.</div>
    </section>
    <section class="card" id="detail" hidden>
      <h3 id="detail-title"></h3>
      <table>
        <thead><tr><th>Server port</th><th>Target (from the client)</th><th>ACL</th><th>Listening</th><th>Connections</th><th>Bytes in / out</th><th></th></tr></thead>
        <tbody id="tunnels"></tbody>
      </table>
      <form class="inline" id="tunnel-form">
        <label>Target host:port <input name="remote" placeholder="127.0.0.1:22" required></label>
        <label>Server port (optional) <input name="local" placeholder="auto"></label>
        <label>ACL (optional) <input name="acl" placeholder="203.0.113.0/24"></label>
        <button type="submit">Create tunnel</button>
      </form>
      <div class="error" id="tunnel-error"></div>
      <div id="tunnel-note"></div>
    </section>
${COMMANDS_HTML}  </main>
</div>
<script src="/dashboard-commands.js"></script>
<script src="/dashboard.js"></script>
</body>
</html>
`;

export const DASHBOARD_CSS = `  :root { --bg: #f6f7f9; --fg: #1d232b; --muted: #6b7480; --line: #dde1e6; --ok: #1a8f4b; --bad: #c0392b; --warn: #b7791f; --accent: #2457c5; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg); color: var(--fg); }
  header { display: flex; align-items: center; gap: 16px; padding: 12px 24px; background: #fff; border-bottom: 1px solid var(--line); }
  header h1 { font-size: 18px; margin: 0; }
  header .meta { color: var(--muted); font-size: 12px; }
  header .live { margin-left: auto; font-size: 12px; color: var(--muted); }
  main { padding: 20px 24px; max-width: 1200px; }
  .card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px; margin-bottom: 16px; }
  table { width: 100%; border-collapse: collapse; }
  th, td { text-align: left; padding: 7px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { font-size: 12px; color: var(--muted); font-weight: 600; }
  tbody tr { cursor: pointer; }
  tbody tr:hover, tbody tr.selected { background: #eef3fd; }
  .dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin-right: 6px; }
  .on { background: var(--ok); } .off { background: #aab2bd; }
  .tag { display: inline-block; padding: 0 6px; margin: 0 3px 2px 0; border-radius: 4px; background: #e8ecf2; font-size: 12px; }
  .armed { color: var(--ok); } .unarmed { color: var(--muted); } .restarts { color: var(--warn); font-weight: 600; }
  form.inline { display: flex; gap: 8px; flex-wrap: wrap; align-items: end; margin-top: 12px; }
  label { display: flex; flex-direction: column; font-size: 12px; color: var(--muted); gap: 3px; }
  input { font: inherit; padding: 6px 8px; border: 1px solid var(--line); border-radius: 6px; min-width: 160px; }
  button { font: inherit; padding: 6px 12px; border: 1px solid var(--accent); background: var(--accent); color: #fff; border-radius: 6px; cursor: pointer; }
  button.ghost { background: #fff; color: var(--bad); border-color: var(--line); }
  .error { color: var(--bad); margin-top: 8px; min-height: 1.2em; }
  #login { max-width: 360px; margin: 80px auto; }
  #login form { display: flex; flex-direction: column; gap: 10px; }
  .empty { color: var(--muted); padding: 12px 8px; }
  code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; }
  header button.ghost { color: var(--muted); }
${COMMANDS_CSS}`;

export const DASHBOARD_JS = `(() => {
${DOM_HELPERS}  let token = sessionStorage.getItem('rport-token');
  let clients = [];
  let selected = null;
  let events = null;
  let ages = null;
  const ago = (iso) => {
    if (!iso) return '-';
    const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    return s < 60 ? s + 's ago' : s < 3600 ? Math.round(s / 60) + 'm ago' : Math.round(s / 3600) + 'h ago';
  };

  // RPort's error envelope: {"errors": [{"code", "title", "detail"}]}.
  const errorOf = (json) => json && json.errors && json.errors[0] ? [json.errors[0].title, json.errors[0].detail].filter(Boolean).join(': ') : '';

  async function api(method, path, body) {
    const res = await fetch(path, { method, headers: { authorization: 'Bearer ' + token, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
    if (res.status === 401) { logout(); throw new Error('logged out'); }
    const text = await res.text();
    const json = text ? JSON.parse(text) : null;
    if (!res.ok) throw new Error(errorOf(json) || res.statusText);
    return json;
  }

  function logout() {
    sessionStorage.removeItem('rport-token');
    token = null;
    if (events) events.close();
    clearInterval(ages);
    $('app').hidden = true;
    $('login').hidden = false;
    document.dispatchEvent(new Event('rport:stop'));
  }

  function render() {
    const body = $('clients');
    body.replaceChildren(...clients.map((c) => {
      const wd = c.watchdog;
      const tr = el('tr', { className: c.id === selected ? 'selected' : '' },
        el('td', {}, el('strong', {}, c.name || c.id), el('div', { className: 'meta' }, el('code', {}, c.id))),
        el('td', {}, el('span', { className: 'dot ' + (c.connected ? 'on' : 'off') }), c.connected ? 'connected' : 'disconnected'),
        el('td', {}, ago(c.last_seen)),
        el('td', {}, c.last_ping_rtt_ms == null ? '-' : c.last_ping_rtt_ms.toFixed(1) + ' ms'),
        el('td', {}, ...c.tags.map((t) => el('span', { className: 'tag' }, t))),
        el('td', { className: wd.armed ? 'armed' : 'unarmed' }, wd.armed ? 'armed' + (wd.systemd_watchdog_sec ? ' (systemd ' + wd.systemd_watchdog_sec + 's)' : ' (state.json)') : 'off', wd.last_state ? el('div', { className: 'meta' }, wd.last_state) : ''),
        el('td', { className: wd.restarts_24h ? 'restarts' : '' }, wd.restarts_24h),
        el('td', {}, c.tunnels.length));
      tr.dataset.client = c.id;
      tr.onclick = () => { selected = c.id; render(); };
      return tr;
    }));
    $('no-clients').hidden = clients.length > 0;
    const c = clients.find((x) => x.id === selected);
    $('detail').hidden = !c;
    if (!c) return;
    $('detail-title').textContent = 'Tunnels of ' + (c.name || c.id) + (c.connected ? '' : ' (disconnected: tunnels listen again when it returns)');
    $('tunnels').replaceChildren(...(c.tunnels.length ? c.tunnels.map((t) => el('tr', {},
      el('td', {}, el('code', {}, t.local)),
      el('td', {}, el('code', {}, t.remote)),
      el('td', {}, t.acl ? t.acl.split(',').join(', ') : 'any'),
      el('td', {}, t.listening ? 'yes' : 'no'),
      el('td', {}, t.open_connections + ' open / ' + t.connections),
      el('td', {}, t.bytes_in + ' / ' + t.bytes_out),
      el('td', {}, el('button', { className: 'ghost', textContent: 'Delete', onclick: async (ev) => {
        ev.stopPropagation();
        try { await api('DELETE', '/api/v1/clients/' + encodeURIComponent(c.id) + '/tunnels/' + t.id); } catch (e) { $('tunnel-error').textContent = e.message; }
      } })))) : [el('tr', {}, el('td', { colSpan: 7, className: 'empty' }, 'No tunnels.'))]));
  }

  function start() {
    $('login').hidden = true;
    $('app').hidden = false;
    api('GET', '/api/v1/status').then((s) => { $('status').textContent = 'v' + s.data.version + ' - host key ' + s.data.fingerprint; }).catch(() => {});
    events = new EventSource('/api/v1/events?token=' + encodeURIComponent(token));
    events.addEventListener('clients', (ev) => {
      clients = JSON.parse(ev.data);
      $('live').textContent = 'live - updated ' + new Date().toLocaleTimeString();
      render();
    });
    events.onerror = () => {
      $('live').textContent = 'reconnecting...';
      // A refused stream (the token expired or was revoked) is not retried by EventSource: ask the API, which logs out on 401.
      if (events.readyState === EventSource.CLOSED) api('GET', '/api/v1/status').catch(() => {});
    };
    ages = setInterval(render, 5000); // "last seen" ages
    document.dispatchEvent(new Event('rport:start'));
  }

  $('login-form').onsubmit = async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const res = await fetch('/api/v1/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: f.get('username'), password: f.get('password') }) });
    const json = await res.json();
    if (!res.ok) { $('login-error').textContent = errorOf(json) || res.statusText; return; }
    token = json.data.token;
    sessionStorage.setItem('rport-token', token);
    start();
  };

  $('logout').onclick = async () => {
    await fetch('/api/v1/logout', { method: 'POST', headers: { authorization: 'Bearer ' + token } }).catch(() => {});
    logout();
  };

  $('tunnel-form').onsubmit = async (ev) => {
    ev.preventDefault();
    $('tunnel-error').textContent = '';
    $('tunnel-note').textContent = '';
    const f = new FormData(ev.target);
    const q = new URLSearchParams({ remote: f.get('remote') });
    if (f.get('local')) q.set('local', f.get('local'));
    if (f.get('acl')) q.set('acl', f.get('acl'));
    try {
      const r = await api('PUT', '/api/v1/clients/' + encodeURIComponent(selected) + '/tunnels?' + q);
      // Where a tunnel without a server address went (loopback on a new install): the server says why.
      if (r && r.data && r.data.note) $('tunnel-note').textContent = r.data.note;
      ev.target.reset();
    } catch (e) { $('tunnel-error').textContent = e.message; }
  };

  if (token) start(); else logout();
})();
`;
