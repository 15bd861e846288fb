import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { test } from 'node:test';
import {
  blackHole,
  cleanup,
  eventually,
  freePort,
  loggedAt,
  promised,
  startClient,
  startServer,
  tmpDir,
} from '../harness/procs.js';

const connected = /INFO {2}client: connected to (\S+) within/;
const seconds = (ms: number) => ms / 1000;

test('connects, authenticates, and the API lists the client; the API wants its credentials', async (t) => {
  const server = await startServer(t);
  const client = startClient(t, `127.0.0.1:${server.port}`, [
    '--id',
    'c-api',
    '--name',
    'box',
    '--tags',
    'a,b',
    '--fingerprint',
    server.fingerprint,
  ]);
  await client.waitFor(connected);
  await client.waitFor(/ping to 127\.0\.0\.1:\d+ succeeded within/);
  assert.doesNotMatch(client.output, /fingerprint is not set/);
  // Start-up report: native crypto, and ssh2 patched for windows larger than 2 MiB (WAN throughput).
  for (const proc of [client, server.proc]) {
    assert.ok(
      proc.lines.some((l) => l.includes('ssh2 native crypto binding is active')),
      proc.lines.join('\n'),
    );
    assert.ok(
      proc.lines.some((l) => l.includes('ssh2 channel windows grow to 16 MiB (patches/ssh2+1.17.0.patch applied)')),
      proc.lines.join('\n'),
    );
  }
  const list = await eventually(async () => {
    const r = await server.api('/api/v1/clients');
    return r.body.data[0]?.last_ping_rtt_ms !== null && r.body.data.length ? r : undefined;
  });
  assert.equal(list.status, 200);
  const c = list.body.data[0];
  assert.equal(c.id, 'c-api');
  assert.equal(c.name, 'box');
  assert.deepEqual(c.tags, ['a', 'b']);
  assert.equal(c.pid, client.pid);
  assert.equal(c.address, '127.0.0.1');
  assert.equal(typeof c.last_ping_rtt_ms, 'number');
  assert.equal((await server.api('/api/v1/clients', '')).status, 401);
  assert.equal((await server.api('/api/v1/clients', 'admin:wrong')).status, 401);
  const missing = await server.api('/api/v1/nothing');
  assert.equal(missing.status, 404);
  assert.equal(missing.body.errors[0].code, 'not_found');
});

test('a wrong password is refused with a clear line; max_retry_count gives up with exit code 1', async (t) => {
  const server = await startServer(t);
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--auth', 'client1:wrong', '--max-retry-count', '1']);
  const exit = await client.exited;
  assert.equal(exit.code, 1);
  assert.match(
    client.output,
    /attempt 1 to 127\.0\.0\.1:\d+ failed: authentication failed: the server refused id "client1" and its password \(check \[client\] auth\)/,
  );
  assert.match(
    client.output,
    /giving up after 2 failed attempts \(max_retry_count = 1\); the last one: authentication failed/,
  );
  await server.proc.waitFor(/failed login as "client1" from 127\.0\.0\.1/);
});

test('a client without [client] fingerprint warns at start, naming the key and where the server shows its fingerprint', async (t) => {
  const server = await startServer(t);
  const client = startClient(t, `127.0.0.1:${server.port}`);
  const warning = await client.waitFor(
    /WARN {2}client: \[client\] fingerprint is not set: the server's host key is not checked, so a man in the middle would go unnoticed; set fingerprint = "SHA256:\.\.\." from the line "host key fingerprint" rportd logs at start/,
  );
  await client.waitFor(connected);
  assert.ok(
    client.lines.indexOf(warning.input!) < client.lines.findIndex((l) => connected.test(l)),
    'the warning comes at start, before the connection',
  );
  assert.equal(
    (await server.api('/api/v1/status')).body.data.fingerprint,
    server.fingerprint,
    'the API shows the fingerprint the warning points to',
  );
});

test('a server key that does not match [client] fingerprint is refused', async (t) => {
  const server = await startServer(t);
  const wrong = 'SHA256:' + 'A'.repeat(43);
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--fingerprint', wrong, '--max-retry-count', '0']);
  assert.equal((await client.exited).code, 1);
  assert.match(
    client.output,
    new RegExp(
      `server host key ${server.fingerprint.replace(/[+/]/g, '\\$&')} does not match \\[client\\] fingerprint = "${wrong}": refusing to connect`,
    ),
  );
  assert.doesNotMatch(client.output, /connected to/);
});

test('the server killed with SIGKILL and restarted: the client is back within its backoff', async (t) => {
  const server = await startServer(t);
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--max-retry-interval', '2s']);
  await client.waitFor(connected);
  const mark = client.mark();
  server.proc.kill('SIGKILL');
  await server.proc.exited;
  await client.waitFor(/connection to 127\.0\.0\.1:\d+ lost/, 5000, mark);
  const again = await startServer(t, [], { port: server.port, apiPort: server.apiPort, dataDir: server.dataDir });
  assert.equal(again.fingerprint, server.fingerprint, 'the host key kept in data_dir survives a restart');
  // From the restarted server's "listening" line to the client's "connected" line, both as logged: a wait of
  // at most max_retry_interval, a connect within connect_timeout, 1 s of slack (scaled by the measured load).
  const listening = await again.proc.waitFor(/listening for clients/);
  const back = await client.waitFor(connected, 2000 + 3000 + 1000, mark);
  const took = loggedAt(back.input!) - loggedAt(listening.input!);
  assert.ok(took <= promised(2000 + 3000, 1000), `back ${took}ms after the server listened`);
  assert.equal((await again.api('/api/v1/clients')).body.data.length, 1);
});

test('max_retry_count as RPort: 0 makes one attempt, 1 retries once', async (t) => {
  const port = await freePort(); // nothing listens there
  const once = startClient(t, `127.0.0.1:${port}`, ['--max-retry-count', '0']);
  assert.equal((await once.exited).code, 1);
  assert.doesNotMatch(once.output, /Retrying in/);
  assert.match(once.output, /giving up after 1 failed attempt \(max_retry_count = 0\)/);
  const twice = startClient(t, `127.0.0.1:${port}`, ['--max-retry-count', '1']);
  assert.equal((await twice.exited).code, 1);
  assert.equal([...twice.output.matchAll(/Retrying in/g)].length, 1, twice.output);
  assert.match(twice.output, /giving up after 2 failed attempts \(max_retry_count = 1\)/);
});

test('waits between attempts grow and are capped at max_retry_interval; max_retry_count exits 1', async (t) => {
  const port = await freePort(); // nothing listens there
  const client = startClient(t, `127.0.0.1:${port}`, ['--max-retry-interval', '3s', '--max-retry-count', '5']);
  const exit = await client.exited;
  assert.equal(exit.code, 1);
  const waits = [...client.output.matchAll(/Retrying in ([\d.]+)(ms|s)\.\.\./g)].map(
    (m) => Number(m[1]) * (m[2] === 's' ? 1000 : 1),
  );
  assert.equal(waits.length, 5, client.output);
  assert.ok(waits[0]! >= 800 && waits[0]! <= 1000, `first wait ${waits}`);
  assert.ok(waits[1]! > waits[0]! && waits[2]! > waits[1]!, `grows: ${waits}`);
  assert.ok(
    waits.every((w) => w <= 3000),
    `capped: ${waits}`,
  );
  assert.ok(waits[4]! >= 2400, `reaches the cap: ${waits}`);
  assert.match(
    client.output,
    /giving up after 6 failed attempts \(max_retry_count = 5\); the last one: .*ECONNREFUSED/,
  );
});

test('a frozen (SIGSTOP) server is noticed within keep_alive + keep_alive_timeout + 1 s', async (t) => {
  const server = await startServer(t);
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--keep-alive', '2s', '--keep-alive-timeout', '1s']);
  await client.waitFor(connected);
  await client.waitFor(/ping to .* succeeded/);
  const mark = client.mark();
  const lastPing = [...client.lines].reverse().find((l) => /ping to .* succeeded/.test(l))!;
  server.proc.kill('SIGSTOP');
  cleanup(t, () => server.proc.kill('SIGCONT'));
  const lost = await client.waitFor(
    /connection to 127\.0\.0\.1:\d+ lost: ping failed: ping request timed out after 1s/,
    6000,
    mark,
  );
  // As the client logged it, from its last answered ping: the server froze after that ping. The 1 s beyond
  // keep_alive + keep_alive_timeout is the client's work, scaled by the measured load.
  const took = loggedAt(lost.input!) - loggedAt(lastPing);
  assert.ok(took <= promised(2000 + 1000, 1000), `noticed ${seconds(took)}s after the last answered ping`);
  const retry = await client.waitFor(/Retrying in/, 1000, mark);
  assert.ok(loggedAt(retry.input!) - loggedAt(lost.input!) < promised(0, 1000), 'the retry is planned at once');
});

test('a stale session of the same client id is replaced; a live one keeps its id', async (t) => {
  const server = await startServer(t, ['--check-clients-connection-timeout', '1s']);
  const a = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'same-id', '--keep-alive', '0s']);
  await a.waitFor(connected);

  const live = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'same-id', '--max-retry-count', '0']);
  assert.equal((await live.exited).code, 1);
  assert.match(
    live.output,
    /server refused the connection: client id "same-id" is already connected from 127\.0\.0\.1 and answered a ping within [\d.]+ms: give each client its own \[client\] id/,
  );

  a.kill('SIGSTOP'); // half-open: the server still holds its session
  cleanup(t, () => a.kill('SIGCONT'));
  const b = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'same-id']);
  await b.waitFor(connected, 8000);
  await server.proc.waitFor(/replacing the stale session of client same-id/);
  const list = (await server.api('/api/v1/clients')).body.data;
  assert.deepEqual(
    list.map((c: { id: string; pid: number }) => [c.id, c.pid]),
    [['same-id', b.pid]],
  );
});

test('the server drops a client that went silent and does not answer its ping', async (t) => {
  const server = await startServer(t, [
    '--check-clients-connection-interval',
    '1s',
    '--check-clients-connection-timeout',
    '500ms',
  ]);
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'silent', '--keep-alive', '0s']);
  await client.waitFor(connected);
  await eventually(async () => ((await server.api('/api/v1/clients')).body.data.length === 1 ? true : undefined));
  client.kill('SIGSTOP');
  cleanup(t, () => client.kill('SIGCONT'));
  await server.proc.waitFor(
    /client silent \(127\.0\.0\.1\) silent for .* and did not answer a ping: ping request timed out after 500ms; dropping it/,
    5000,
  );
  assert.equal((await server.api('/api/v1/clients?connected=true')).body.data.length, 0);
  const [gone] = (await server.api('/api/v1/clients?connected=false')).body.data;
  assert.equal(gone.id, 'silent');
  assert.ok(gone.disconnected_at);
});

test('SIGTERM stops client and server cleanly within 2 s with exit code 0', async (t) => {
  const server = await startServer(t);
  const client = startClient(t, `127.0.0.1:${server.port}`);
  await client.waitFor(connected);
  for (const p of [client, server.proc]) {
    const t0 = Date.now();
    p.kill('SIGTERM');
    const exit = await p.exited;
    assert.deepEqual(exit, { code: 0, signal: null });
    // rportd and rport exit by 1.9 s whatever happens; the rest is the signal and the exit's way to this
    // test, which the measured load slows.
    assert.ok(Date.now() - t0 < promised(1900, 2000), `stopped in ${Date.now() - t0}ms`);
  }
});

test('SIGHUP skips the current wait and retries at once', async (t) => {
  const port = await freePort();
  const client = startClient(t, `127.0.0.1:${port}`, ['--max-retry-interval', '60s']);
  const retrying = await client.waitFor(/Retrying in ([4-9][\d.]*)s\.\.\./, 10_000);
  const waitMs = Number(retrying[1]) * 1000;
  const mark = client.mark();
  client.kill('SIGHUP');
  const next = await client.waitFor(/attempt \d+: connecting/, 2000, mark);
  // The next attempt came, as the client logged it, before the wait it was in would have ended: skipped.
  const after = loggedAt(next.input!) - loggedAt(retrying.input!);
  assert.ok(after < waitMs, `next attempt ${after}ms after "Retrying", the wait was ${waitMs}ms`);
});

test('fallback servers are used in order, and the client switches back to the main one when it answers', async (t) => {
  const main = await blackHole(t); // holds the main server's port: it accepts and never answers
  const fallback = await startServer(t);
  const client = startClient(t, `127.0.0.1:${main.port}`, [
    '--fallback-servers',
    `127.0.0.1:${fallback.port}`,
    '--server-switchback-interval',
    '1s',
    '--connect-timeout',
    '1s',
  ]);
  await client.waitFor(
    new RegExp(`attempt 1 to 127\\.0\\.0\\.1:${main.port} failed: WebSocket upgrade .* timed out`),
    5000,
  );
  const m = await client.waitFor(connected, 10_000);
  assert.equal(m[1], `127.0.0.1:${fallback.port}`);
  await main.close();
  const mainServer = await startServer(t, [], { port: main.port, apiPort: await freePort(), dataDir: tmpDir(t) });
  await client.waitFor(/switching back to the main server/, 5000);
  await client.waitFor(new RegExp(`connected to 127\\.0\\.0\\.1:${main.port} within`), 5000);
  assert.equal((await mainServer.api('/api/v1/clients')).body.data.length, 1);
  await eventually(
    async () => ((await fallback.api('/api/v1/clients?connected=true')).body.data.length === 0 ? true : undefined),
    5000,
    'fallback released the client',
  );
});

test('failed logins from one address get it banned for ban_time', async (t) => {
  const server = await startServer(t, ['--max-failed-login', '2', '--ban-time', '1h']);
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--auth', 'client1:bad', '--max-retry-count', '2']);
  assert.equal((await client.exited).code, 1);
  assert.match(
    client.output,
    /giving up after 3 failed attempts .* server answered the WebSocket upgrade with HTTP 403 \(too many failed logins from 127\.0\.0\.1: banned for another (59m\d+s|1h0m0s)\)/,
  );
  // Even the right password is refused while banned.
  const good = startClient(t, `127.0.0.1:${server.port}`, ['--max-retry-count', '0']);
  assert.equal((await good.exited).code, 1);
});

test('through an HTTP CONNECT proxy', async (t) => {
  const server = await startServer(t);
  const seen: string[] = [];
  const proxy = createServer((sock: Socket) => {
    sock.once('data', (head) => {
      const line = head.toString().split('\r\n')[0]!;
      seen.push(line);
      const [, host, port] = /^CONNECT ([^:]+):(\d+) /.exec(line) ?? [];
      const up = netConnect(Number(port), host, () => {
        sock.write('HTTP/1.1 200 Connection established\r\n\r\n');
        up.pipe(sock).pipe(up);
      });
      up.on('error', () => sock.destroy());
      sock.on('error', () => up.destroy());
    });
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  cleanup(t, () => proxy.close());
  const client = startClient(t, `127.0.0.1:${server.port}`, [
    '--proxy',
    `http://127.0.0.1:${(proxy.address() as { port: number }).port}`,
  ]);
  await client.waitFor(connected);
  assert.deepEqual(seen, [`CONNECT 127.0.0.1:${server.port} HTTP/1.1`]);
});

test('wss:// with TLS: verified against tls_ca; an untrusted certificate is refused', async (t) => {
  const dir = tmpDir(t);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout',
      `${dir}/key.pem`,
      '-out',
      `${dir}/cert.pem`,
    ],
    { stdio: 'ignore' },
  );
  const server = await startServer(t, ['--tls-cert', `${dir}/cert.pem`, '--tls-key', `${dir}/key.pem`]);
  const ok = startClient(t, `wss://localhost:${server.port}`, ['--tls-ca', `${dir}/cert.pem`]);
  await ok.waitFor(connected);
  const untrusted = startClient(t, `wss://localhost:${server.port}`, ['--max-retry-count', '0']);
  assert.equal((await untrusted.exited).code, 1);
  assert.match(untrusted.output, /giving up after 1 failed attempt .*self[- ]signed certificate/);
});

test('every step has a timeout: a server that never answers the WebSocket upgrade', async (t) => {
  const { port } = await blackHole(t);
  const client = startClient(t, `127.0.0.1:${port}`, ['--connect-timeout', '1s', '--max-retry-count', '1']);
  assert.equal((await client.exited).code, 1);
  // The upgrade gets what the TCP connect left of connect_timeout: under load, less than 900 ms.
  assert.match(
    client.output,
    new RegExp(
      `attempt 1 to 127\\.0\\.0\\.1:${port} failed: WebSocket upgrade at ws://127\\.0\\.0\\.1:${port}/ timed out after (1s|[5-9]\\d\\dms)`,
    ),
  );
  // Two attempts of 1 s and one wait of at most 1 s, as the client logged them: nothing waited for longer
  // (2 s of slack for the client's work around its timers, scaled by the measured load).
  const began = loggedAt(client.lines.find((l) => /attempt 1: connecting/.test(l))!);
  const took = loggedAt(client.lines.find((l) => /giving up/.test(l))!) - began;
  assert.ok(took < promised(3000, 2000), `gave up ${took}ms after the first attempt began`);
});

test('auth_file: plain and bcrypt ($2y$ as PHP writes it) passwords', async (t) => {
  const bcrypt = (await import('bcryptjs')).default;
  const dir = tmpDir(t);
  const { writeFile } = await import('../harness/procs.js');
  const hash = bcrypt.hashSync('hashed-pw', 4).replace(/^\$2[ab]\$/, '$2y$');
  const authFile = writeFile(dir, 'auth.json', JSON.stringify({ plain: 'plain-pw', hashed: hash }));
  const server = await startServer(t, ['--auth-file', authFile]);
  for (const [id, pw] of [
    ['plain', 'plain-pw'],
    ['hashed', 'hashed-pw'],
  ]) {
    const ok = startClient(t, `127.0.0.1:${server.port}`, ['--auth', `${id}:${pw}`, '--id', id!]);
    await ok.waitFor(connected);
  }
  const bad = startClient(t, `127.0.0.1:${server.port}`, [
    '--auth',
    'hashed:wrong',
    '--id',
    'x',
    '--max-retry-count',
    '0',
  ]);
  assert.equal((await bad.exited).code, 1);
  assert.match(bad.output, /authentication failed/);
});

test('a client killed with SIGKILL is dropped by the server at once, not after the liveness check', async (t) => {
  const server = await startServer(t); // check_clients_connection_interval stays at its 5m default
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'killed']);
  await client.waitFor(connected);
  client.kill('SIGKILL');
  await server.proc.waitFor(/client killed disconnected \(127\.0\.0\.1\)/, 3000);
  // Seen by the connection's end, not by the liveness check (which would log its unanswered ping first).
  assert.equal(
    server.proc.lines.some((l) => /did not answer a ping/.test(l)),
    false,
    server.proc.output,
  );
  assert.equal((await server.api('/api/v1/clients?connected=true')).body.data.length, 0);
});

test('client_login_timeout: a connection that logs in but never sends its connection request is dropped', async (t) => {
  const { dial } = await import('../src/client/dial.js');
  const { StepClock } = await import('../src/watchdog/step-clock.js');
  const { parseServerUrl } = await import('../src/config/server-url.js');
  const server = await startServer(t, ['--client-login-timeout', '1s']);
  const [id, password] = ['client1', 's3cret'];
  // client_login_timeout counts from the TCP accept, so from before the dial.
  const t0 = Date.now();
  const link = await dial(
    {
      server: parseServerUrl(`127.0.0.1:${server.port}`)!,
      proxy: undefined,
      extraCa: undefined,
      headers: {},
      authId: id,
      password,
      fingerprint: '',
      timeoutMs: 5000,
    },
    new StepClock(),
    () => undefined,
  );
  cleanup(t, () => link.close());
  await new Promise<void>((r) => link.ssh.once('close', () => r()));
  const took = Date.now() - t0;
  // Not before the timeout (load only delays); after it, the dial's and the drop's work, scaled by the load.
  assert.ok(took >= 800 && took < promised(1000, 2000), `dropped after ${took}ms`);
  await server.proc.waitFor(
    /dropping 127\.0\.0\.1: no accepted connection request within 1s \(\[server\] client_login_timeout\)/,
  );
});
