// The dashboard's commands panel: run a command on one client or a set, watch the output arrive, see the
// history. A script of its own beside dashboard.js (the CSP allows only files), told of log in and log out
// by dashboard.js's rport:start and rport:stop events; it follows /api/v1/events for the clients and jobs.
import { DOM_HELPERS } from './dashboard-dom.js';

export const COMMANDS_HTML = `    <section class="card" id="commands">
      <h3>Commands</h3>
      <form class="inline" id="cmd-form">
        <label>Clients (connected) <select id="cmd-clients" name="clients" multiple size="4" required></select></label>
        <label>Command <input name="command" id="cmd-command" placeholder="/usr/bin/uptime" required></label>
        <label>Interpreter <select name="interpreter"><option value="">default</option><option>sh</option><option>bash</option><option>cmd</option><option>powershell</option></select></label>
        <label>Timeout (s) <input name="timeout" type="number" min="1" max="604800" value="60"></label>
        <button type="submit">Run</button>
      </form>
      <div class="meta">The client decides: its [remote-commands] allow, deny and order refuse what they do not permit (by default full paths in /usr/bin and /usr/local/bin, one command, no pipes or redirects).</div>
      <div class="error" id="cmd-error"></div>
      <div id="cmd-runs"></div>
      <h4>History</h4>
      <table>
        <thead><tr><th>Started</th><th>Client</th><th>Command</th><th>Status</th><th>Started by</th></tr></thead>
        <tbody id="cmd-history"></tbody>
      </table>
    </section>
`;

export const COMMANDS_CSS = `  #commands select { font: inherit; min-width: 180px; border: 1px solid var(--line); border-radius: 6px; }
  #commands h4 { margin: 16px 0 4px; font-size: 13px; }
  .run { border: 1px solid var(--line); border-radius: 6px; margin-top: 10px; }
  .run-head { padding: 6px 10px; background: #f3f5f8; font-size: 12px; display: flex; gap: 12px; }
  .run pre { margin: 0; padding: 8px 10px; max-height: 260px; overflow: auto; font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; white-space: pre-wrap; }
  .run pre.stderr { color: var(--bad); }
  .st-successful { color: var(--ok); } .st-failed { color: var(--bad); } .st-running, .st-unknown { color: var(--warn); }
`;

export const COMMANDS_JS = `(() => {
${DOM_HELPERS}  let events = null;
  let current = null; // { multi: bool, jid, client }
  let refreshing = null;
  const token = () => sessionStorage.getItem('rport-token');
  async function api(method, path, body) {
    const res = await fetch(path, { method, headers: { authorization: 'Bearer ' + token(), ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
    const text = await res.text();
    const json = text ? JSON.parse(text) : null;
    if (!res.ok) throw new Error(json && json.errors && json.errors[0] ? json.errors[0].title : res.statusText);
    return json;
  }
  const chosen = () => [...$('cmd-clients').selectedOptions].map((o) => o.value);

  function renderRuns(jobs) {
    $('cmd-runs').replaceChildren(...jobs.map((j) => {
      const out = j.result ? j.result : { stdout: '', stderr: '' };
      const box = el('div', { className: 'run' },
        el('div', { className: 'run-head' }, el('strong', {}, j.client_name || j.client_id), el('span', { className: 'st-' + j.status }, j.status), j.exit_code == null ? '' : 'exit code ' + j.exit_code, j.error ? el('span', {}, j.error) : ''),
        el('pre', { className: 'stdout' }, out.stdout),
        out.stderr ? el('pre', { className: 'stderr' }, out.stderr) : '');
      box.dataset.client = j.client_id;
      box.dataset.status = j.status;
      return box;
    }));
  }

  async function refreshRun() {
    if (!current) return;
    try {
      if (current.multi) renderRuns((await api('GET', '/api/v1/commands/' + current.jid)).data.jobs);
      else renderRuns([(await api('GET', '/api/v1/clients/' + encodeURIComponent(current.client) + '/commands/' + current.jid)).data]);
    } catch (e) { $('cmd-error').textContent = e.message; }
  }

  async function refreshHistory() {
    const ids = chosen();
    const lists = await Promise.all(ids.map((id) => api('GET', '/api/v1/clients/' + encodeURIComponent(id) + '/commands?page[limit]=20').then((r) => r.data, () => [])));
    const rows = lists.flat().sort((a, b) => Date.parse(b.started_at) - Date.parse(a.started_at)).slice(0, 20);
    $('cmd-history').replaceChildren(...(rows.length ? rows.map((j) => el('tr', {},
      el('td', {}, new Date(j.started_at).toLocaleTimeString()),
      el('td', {}, j.client_name || j.client_id),
      el('td', {}, el('code', {}, j.is_script ? '(script)' : j.command)),
      el('td', { className: 'st-' + j.status }, j.status),
      el('td', {}, j.created_by))) : [el('tr', {}, el('td', { colSpan: 5, className: 'empty' }, ids.length ? 'No commands yet.' : 'Choose clients to see their history.'))]));
  }

  // Output comes in many small events: the panel refreshes at most every 250 ms.
  function soon() {
    if (refreshing) return;
    refreshing = setTimeout(() => { refreshing = null; void refreshRun(); }, 250);
  }

  function setClients(clients) {
    const keep = new Set(chosen());
    const online = clients.filter((c) => c.connected);
    $('cmd-clients').replaceChildren(...online.map((c) => el('option', { value: c.id, selected: keep.has(c.id) }, (c.name || c.id) + (c.name && c.name !== c.id ? ' (' + c.id + ')' : ''))));
  }

  document.addEventListener('rport:start', () => {
    events = new EventSource('/api/v1/events?token=' + encodeURIComponent(token()));
    events.addEventListener('clients', (ev) => setClients(JSON.parse(ev.data)));
    events.addEventListener('job-output', soon);
    events.addEventListener('job', () => { soon(); void refreshHistory(); });
  });
  document.addEventListener('rport:stop', () => {
    if (events) events.close();
    events = null;
    current = null;
  });
  $('cmd-clients').onchange = () => void refreshHistory();

  $('cmd-form').onsubmit = async (ev) => {
    ev.preventDefault();
    $('cmd-error').textContent = '';
    const f = new FormData(ev.target);
    const ids = chosen();
    const ask = { command: f.get('command'), interpreter: f.get('interpreter') || undefined, timeout_sec: Number(f.get('timeout')) || undefined };
    try {
      if (ids.length === 1) current = { multi: false, client: ids[0], jid: (await api('POST', '/api/v1/clients/' + encodeURIComponent(ids[0]) + '/commands', ask)).data.jid };
      else current = { multi: true, jid: (await api('POST', '/api/v1/commands', { ...ask, client_ids: ids, execute_concurrently: true })).data.jid };
      await refreshRun();
      await refreshHistory();
    } catch (e) { $('cmd-error').textContent = e.message; }
  };
})();
`;
