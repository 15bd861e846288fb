import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { MIGRATIONS } from '../src/server/store/index.js';
import {
  apiRequest,
  eventually,
  loggedAt,
  startClient,
  startServer,
  tmpDir,
  API_AUTH,
  type ServerHandle,
} from '../harness/procs.js';

const connected = /INFO {2}client: connected to (\S+) within/;

function call(
  server: ServerHandle,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: any }> {
  return apiRequest(server.apiPort, method, path, { body, headers });
}

test('the registry keeps disconnected clients, counts restarts, and shows the watchdog; only disconnected clients can be deleted', async (t) => {
  const server = await startServer(t);
  const rx = join(tmpDir(t), 'n.sock');
  let client = startClient(t, `127.0.0.1:${server.port}`, [
    '--id',
    'fleet-1',
    '--tags',
    'web,eu',
    '--watchdog-integration',
  ]);
  await client.waitFor(connected);
  let c = (await call(server, 'GET', '/api/v1/clients/fleet-1')).body.data;
  assert.equal(c.connected, true);
  assert.deepEqual(c.watchdog, {
    integration: true,
    systemd_watchdog_sec: null,
    heartbeat_budget_sec: 6,
    last_state: 'initialized',
    armed: true,
    restarts_24h: 0,
  });
  await client.waitFor(/ping to .* succeeded/);
  await eventually(
    async () =>
      (await call(server, 'GET', '/api/v1/clients/fleet-1')).body.data.watchdog.last_state === 'connected'
        ? true
        : undefined,
    5000,
    'last_state from pings',
  );

  assert.equal((await call(server, 'DELETE', '/api/v1/clients/fleet-1')).status, 409);
  assert.equal((await client.stop()).code, 0);
  await eventually(
    async () =>
      (await call(server, 'GET', '/api/v1/clients/fleet-1')).body.data.connected === false ? true : undefined,
    5000,
  );
  c = (await call(server, 'GET', '/api/v1/clients/fleet-1')).body.data;
  assert.ok(c.disconnected_at && c.last_seen);

  // A new process (new pid) of the same client: a restart, as a watchdog restart would be.
  client = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'fleet-1', '--tags', 'web,eu'], {
    NOTIFY_SOCKET: rx,
    WATCHDOG_USEC: '20000000',
  });
  await client.waitFor(connected);
  c = (await call(server, 'GET', '/api/v1/clients/fleet-1')).body.data;
  assert.equal(c.watchdog.restarts_24h, 1);
  assert.equal(c.watchdog.systemd_watchdog_sec, 20);
  assert.equal(c.watchdog.integration, false);
  assert.equal(c.watchdog.armed, true);

  const other = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'fleet-2', '--tags', 'db']);
  await other.waitFor(connected);
  const ids = async (q: string) =>
    (await call(server, 'GET', `/api/v1/clients${q}`)).body.data.map((x: { id: string }) => x.id);
  assert.deepEqual(await ids(''), ['fleet-1', 'fleet-2']);
  assert.deepEqual(await ids('?tag=db'), ['fleet-2']);
  assert.deepEqual(await ids('?q=FLEET-1'), ['fleet-1']);
  await other.stop();
  await eventually(async () => ((await ids('?connected=true')).length === 1 ? true : undefined), 5000);
  assert.deepEqual(await ids('?connected=false'), ['fleet-2']);
  assert.equal((await call(server, 'DELETE', '/api/v1/clients/fleet-2')).status, 204);
  assert.deepEqual(await ids(''), ['fleet-1']);
  assert.equal((await call(server, 'DELETE', '/api/v1/clients/fleet-2')).status, 404);
  assert.equal((await call(server, 'GET', '/api/v1/clients?connected=maybe')).status, 400);
});

test('keep_disconnected_clients: with purge_disconnected_clients, clients gone for longer leave the registry', async (t) => {
  const server = await startServer(t, [
    '--purge-disconnected-clients',
    '--keep-disconnected-clients',
    '1s',
    '--purge-disconnected-clients-interval',
    '1s',
  ]);
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'short-lived']);
  await client.waitFor(connected);
  await client.stop();
  await server.proc.waitFor(
    /client short-lived disconnected for over keep_disconnected_clients: removed from the registry/,
    5000,
  );
  assert.equal((await call(server, 'GET', '/api/v1/clients/short-lived')).status, 404);
});

test('client credentials through the API: a new client id can log in, a removed one cannot; config ones are fixed', async (t) => {
  const server = await startServer(t);
  let r = await call(server, 'POST', '/api/v1/credentials', { id: 'added', password: 'a-long-secret' });
  assert.equal(r.status, 201);
  assert.equal(
    (await call(server, 'POST', '/api/v1/credentials', { id: 'added', password: 'another-one' })).status,
    409,
  );
  r = await call(server, 'POST', '/api/v1/credentials', { id: 'short', password: 'x' });
  assert.equal(r.status, 400);
  assert.match(r.body.errors[0].title, /body field "password" must NOT have fewer than 8 characters/);
  assert.equal(
    (await call(server, 'POST', '/api/v1/credentials', { id: 'client1', password: 'whatever-long' })).status,
    409,
  );
  assert.deepEqual(
    (await call(server, 'GET', '/api/v1/credentials')).body.data.map((c: { id: string }) => c.id),
    ['added'],
  );

  const ok = startClient(t, `127.0.0.1:${server.port}`, ['--auth', 'added:a-long-secret', '--id', 'cred-client']);
  await ok.waitFor(connected);
  assert.equal((await call(server, 'DELETE', '/api/v1/credentials/added')).status, 204);
  assert.equal((await call(server, 'DELETE', '/api/v1/credentials/client1')).status, 409);
  const refused = startClient(t, `127.0.0.1:${server.port}`, [
    '--auth',
    'added:a-long-secret',
    '--id',
    'cred-2',
    '--max-retry-count',
    '0',
  ]);
  assert.equal((await refused.exited).code, 1);
  assert.match(refused.output, /authentication failed/);
});

test('POST /login gives a bearer token; wrong passwords get 401 and then 429 from the same address', async (t) => {
  const server = await startServer(t, ['--api-max-failed-login', '3']);
  const [user, password] = API_AUTH.split(':');
  const login = await call(server, 'POST', '/api/v1/login', { username: user, password }, { authorization: '' });
  assert.equal(login.status, 200);
  const bearer = { authorization: `Bearer ${login.body.data.token}` };
  assert.equal((await call(server, 'GET', '/api/v1/status', undefined, bearer)).status, 200);
  assert.equal(
    (await call(server, 'GET', '/api/v1/status', undefined, { authorization: 'Bearer forged' })).status,
    401,
  );
  assert.equal((await call(server, 'GET', '/api/v1/status', undefined, { authorization: '' })).status, 401);
  for (let i = 0; i < 3; i++)
    assert.equal(
      (await call(server, 'POST', '/api/v1/login', { username: user, password: 'wrong' }, { authorization: '' }))
        .status,
      401,
    );
  const banned = await call(server, 'POST', '/api/v1/login', { username: user, password }, { authorization: '' });
  assert.equal(banned.status, 429);
  assert.equal(banned.body.errors[0].code, 'too_many_failed_logins');
  assert.equal((await call(server, 'POST', '/api/v1/login', { username: user }, { authorization: '' })).status, 400);
});

test('GET /metrics in Prometheus format: clients, handshakes and failures, round trips, bytes per tunnel', async (t) => {
  const server = await startServer(t);
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'metered']);
  await client.waitFor(connected);
  await client.waitFor(/ping to .* succeeded/);
  await client.waitFor(/ping to .* succeeded/, 5000, client.mark());
  const bad = startClient(t, `127.0.0.1:${server.port}`, [
    '--auth',
    'client1:nope',
    '--id',
    'x',
    '--max-retry-count',
    '0',
  ]);
  await bad.exited;
  const tunnel = await call(server, 'PUT', `/api/v1/clients/metered/tunnels?remote=127.0.0.1:${server.apiPort}`);
  const port = Number(tunnel.body.data.local.split(':').pop());
  await new Promise<void>((resolve) => {
    const s = connect(port, '127.0.0.1', () => s.end('GET /metrics HTTP/1.0\r\n\r\n'));
    s.on('data', () => undefined);
    s.on('close', () => resolve());
  });
  const res = await fetch(`http://127.0.0.1:${server.apiPort}/metrics`, {
    headers: { authorization: `Basic ${Buffer.from(API_AUTH).toString('base64')}` },
  });
  const text = await res.text();
  assert.equal(res.status, 200);
  assert.match(text, /^rport_clients_connected 1$/m);
  assert.match(text, /^rport_handshakes_total 1$/m);
  assert.match(text, /^rport_handshake_failures_total\{reason="auth"\} 1$/m);
  assert.match(text, /^rport_ping_rtt_seconds_count [1-9]\d*$/m);
  assert.match(
    text,
    new RegExp(
      `^rport_tunnel_bytes_total\\{tunnel="${tunnel.body.data.id}",client="metered",direction="in"\\} 2\\d$`,
      'm',
    ),
  );
  assert.equal((await fetch(`http://127.0.0.1:${server.apiPort}/metrics`)).status, 401);
});

test('rportd killed with SIGKILL during 1,000 API writes: every acknowledged write is there after a restart, and the database is intact', async (t) => {
  const many = ['--max-tunnels-per-client', '1000']; // the writes are tunnels of one client
  const server = await startServer(t, many);
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'writer', '--max-retry-interval', '1s']);
  await client.waitFor(connected);
  const acknowledged: string[] = [];
  let killed = false;
  const worker = async () => {
    while (acknowledged.length < 1000 && !killed) {
      try {
        const r = await call(server, 'PUT', '/api/v1/clients/writer/tunnels?remote=127.0.0.1:9&local=127.0.0.1:0');
        if (r.status === 200) acknowledged.push(r.body.data.id);
      } catch {
        return; // the server is gone
      }
      if (acknowledged.length === 400 && !killed) {
        killed = true;
        server.proc.kill('SIGKILL');
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  await server.proc.exited;
  assert.ok(acknowledged.length >= 400, `${acknowledged.length} writes acknowledged before the kill`);

  const again = await startServer(t, many, { port: server.port, apiPort: server.apiPort, dataDir: server.dataDir });
  await client.waitFor(/connected to/, 10_000, client.mark());
  const stored = new Set(
    (await call(again, 'GET', '/api/v1/clients/writer/tunnels')).body.data.map((x: { id: string }) => x.id),
  );
  const missing = acknowledged.filter((id) => !stored.has(id));
  assert.deepEqual(missing, [], 'acknowledged tunnels lost');
  await again.proc.stop();
  const Database = (await import('better-sqlite3')).default;
  const db = new Database(join(server.dataDir, 'rportd.db'), { readonly: true });
  assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
  assert.equal(db.pragma('user_version', { simple: true }), MIGRATIONS.length);
  db.close();
});

test('pings are not one database write each: last-seen times reach the store in batches', async (t) => {
  const server = await startServer(t);
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'chatty', '--keep-alive', '200ms']);
  await client.waitFor(connected);
  const wal = join(server.dataDir, 'rportd.db-wal');
  const { statSync } = await import('node:fs');
  // 15 pings in 3 s: one commit each would add at least 15 pages (4 KiB) to the write-ahead log.
  const pings = () => client.lines.filter((l) => /ping to .* succeeded/.test(l)).length;
  const [before, pingsBefore] = [statSync(wal).size, pings()];
  await eventually(() => (pings() >= pingsBefore + 15 ? true : undefined), 20_000, '15 pings');
  const grown = statSync(wal).size - before;
  assert.ok(grown <= 3 * 4096 + 3 * 24, `the write-ahead log grew by ${grown} bytes during 15 pings`);
  // The API still shows the latest ping of a connected client at once, not the batch's older time: the client
  // sends a ping only after the one before was answered, so the server saw the last answered ping after the
  // client logged the one before it. Causal, so no load can make it fail.
  const answered = client.lines.filter((l) => /ping to .* succeeded/.test(l));
  const previous = loggedAt(answered.at(-2)!);
  const seen = Date.parse((await call(server, 'GET', '/api/v1/clients/chatty')).body.data.last_seen);
  assert.ok(
    seen >= previous,
    `last seen ${previous - seen} ms before the client logged the ping before the last answered one`,
  );
});
