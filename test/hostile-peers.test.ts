// An internet-facing rportd against peers that hold resources without ever logging in, and against logged-in
// clients that ask for more than rport uses: real sockets on 127.0.0.0/8, a real rportd process.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import test from 'node:test';
import WebSocket from 'ws';
import { WS_SUBPROTOCOL } from '../src/transport/protocol.js';
import { startServerInProcess } from './helpers/in-process.js';
import { CLIENT_AUTH, cleanup, eventually, metric, patient, startClient, startServer } from '../harness/procs.js';
import { connectRequest, rawLink, rawSsh, requestConnect, sendAndReset, upgradeRequest } from './helpers/raw-client.js';

const LIMIT = { timeout: patient(120_000) };
const connected = /INFO {2}client: connected to /;

/** Opens `n` TCP connections from `from` (a loopback address) and runs `then` on each once connected. */
async function open(
  t: test.TestContext,
  port: number,
  n: number,
  from = '127.0.0.1',
  then: (s: Socket) => void = () => undefined,
): Promise<Socket[]> {
  const socks = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<Socket>((resolve) => {
          const s = connect({ port, host: '127.0.0.1', localAddress: from }, () => {
            then(s);
            resolve(s);
          });
          s.on('error', () => resolve(s));
        }),
    ),
  );
  cleanup(t, () => socks.forEach((s) => s.destroy()));
  return socks;
}

const allClosed = (socks: Socket[]) =>
  eventually(
    () => (socks.every((s) => s.destroyed || s.readyState === 'closed') ? true : undefined),
    30_000,
    'every hostile connection closed',
  );

const rssKb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

test(
  'silent and half-HTTP connections are closed by client_login_timeout, counted from TCP accept',
  LIMIT,
  async (t) => {
    const server = await startServerInProcess(t, ['--client-login-timeout', '3s']);
    const silent = await open(t, server.port, 100);
    const half = await open(t, server.port, 100, '127.0.0.1', (s) => s.write('GET / HTTP/1.1\r\nHost: x\r\nUpgr'));
    await allClosed([...silent, ...half]);
    await server.proc.waitFor(
      /dropping 127\.0\.0\.1: no accepted connection request within 3s \(\[server\] client_login_timeout\), not even a WebSocket upgrade/,
    );
  },
);

test('WebSockets that never send the SSH identification are closed by client_login_timeout', LIMIT, async (t) => {
  const server = await startServerInProcess(t, ['--client-login-timeout', '3s']);
  const sockets = await Promise.all(
    Array.from(
      { length: 200 },
      () =>
        new Promise<WebSocket>((resolve, reject) => {
          const ws = new WebSocket(`ws://127.0.0.1:${server.port}/`, WS_SUBPROTOCOL, { perMessageDeflate: false });
          ws.on('open', () => resolve(ws));
          ws.on('error', reject);
        }),
    ),
  );
  cleanup(t, () => sockets.forEach((ws) => ws.terminate()));
  await eventually(
    () => (sockets.every((ws) => ws.readyState === WebSocket.CLOSED) ? true : undefined),
    30_000,
    'every silent WebSocket closed',
  );
  await server.proc.waitFor(
    /dropping 127\.0\.0\.1: no accepted connection request within 3s \(\[server\] client_login_timeout\)$/,
  );
});

test(
  'half-sent 4 MiB WebSocket frames before login: refused at the frame header, memory stays put',
  LIMIT,
  async (t) => {
    const server = await startServer(t);
    const before = rssKb(server.proc.pid);
    const sockets = await Promise.all(
      Array.from(
        { length: 50 },
        () =>
          new Promise<WebSocket>((resolve, reject) => {
            const ws = new WebSocket(`ws://127.0.0.1:${server.port}/`, WS_SUBPROTOCOL, { perMessageDeflate: false });
            ws.on('open', () => resolve(ws));
            ws.on('error', () => undefined);
            ws.on('unexpected-response', reject);
          }),
      ),
    );
    cleanup(t, () => sockets.forEach((ws) => ws.terminate()));
    // A binary frame header announcing 4 MiB (masked, as from a client), then the first 1 MiB of it.
    const header = Buffer.from([0x82, 0xff, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0]);
    for (const ws of sockets) {
      const raw = (ws as unknown as { _socket: Socket })._socket;
      raw.write(header);
      raw.write(Buffer.alloc(1 << 20));
    }
    await eventually(
      () => (sockets.every((ws) => ws.readyState === WebSocket.CLOSED) ? true : undefined),
      30_000,
      'every oversized frame refused',
    );
    const grown = rssKb(server.proc.pid) - before;
    assert.ok(grown < 64 * 1024, `rportd grew by ${grown} KiB`);
  },
);

test(
  'limits on connections that have not logged in: per address the newest is refused; in all the oldest makes room, so a real client gets in past 2,000 silent peers',
  LIMIT,
  async (t) => {
    const server = await startServer(t, [
      '--max-unauthenticated-connections',
      '500',
      '--max-unauthenticated-connections-per-address',
      '100',
    ]);
    // One address over its share: the connections past 100 are refused at once.
    const one = await open(t, server.port, 150, '127.0.0.9');
    await eventually(
      () => (one.filter((s) => s.destroyed || s.readyState === 'closed').length >= 50 ? true : undefined),
      20_000,
      '50 refused',
    );
    await eventually(
      async () =>
        (await metric(server, 'rport_connections_refused_total{limit="per_address"}')) >= 50 ? true : undefined,
      10_000,
      '50 refused counted',
    );
    await server.proc.waitFor(
      /refused a connection from 127\.0\.0\.9: it already has 100 connections that have not logged in \(\[server\] max_unauthenticated_connections_per_address\)/,
    );
    // 2,000 silent peers from 20 addresses: the oldest give way to the newest.
    for (let i = 0; i < 20; i++) await open(t, server.port, 100, `127.0.1.${i + 1}`);
    // The server accepts them at its own pace: wait until it has made room 1,500 times.
    await eventually(
      async () => ((await metric(server, 'rport_connections_refused_total{limit="total"}')) >= 1500 ? true : undefined),
      30_000,
      '1,500 oldest closed',
    );
    const client = startClient(t, `127.0.0.1:${server.port}`);
    await client.waitFor(connected);
  },
);

test(
  'a logged-in client gets only what rport uses: one session, the control subsystem, no exec, shell, env or direct-tcpip; a control flood ends it',
  LIMIT,
  async (t) => {
    const server = await startServerInProcess(t);
    const link = await rawLink(server.port, CLIENT_AUTH);
    cleanup(t, () => link.close());
    await requestConnect(link, connectRequest('probe', 4242));
    const refused = (what: string, open: (cb: (err: Error | undefined) => void) => void) =>
      new Promise<void>((resolve, reject) => {
        open((err) => (err ? resolve() : reject(new Error(`${what} was accepted`))));
      });
    await refused('exec', (cb) =>
      link.ssh.exec('id', (err, ch) => {
        ch?.close();
        cb(err);
      }),
    );
    await refused('shell', (cb) =>
      link.ssh.shell((err, ch) => {
        ch?.close();
        cb(err);
      }),
    );
    await refused('sftp', (cb) => link.ssh.sftp((err) => cb(err)));
    await refused('another subsystem', (cb) =>
      link.ssh.subsys('rport-control@rport', (err, ch) => {
        ch?.close();
        cb(err);
      }),
    );
    await refused('direct-tcpip', (cb) =>
      link.ssh.forwardOut('127.0.0.1', 1, '127.0.0.1', server.apiPort, (err, ch) => {
        ch?.close();
        cb(err);
      }),
    );
    // Still connected after all that; then 5,000 control messages at once.
    assert.equal((await server.api('/api/v1/clients/probe')).body.data.connected, true);
    for (let i = 0; i < 5000; i++) link.control.request('ping', {}, 10_000).catch(() => undefined);
    await server.proc.waitFor(/client probe disconnected/);
    assert.equal((await server.api('/api/v1/clients/probe')).body.data.connected, false);
  },
);

test('connection request fields are bounded: an oversized list is refused with the field named', LIMIT, async (t) => {
  const server = await startServerInProcess(t);
  const link = await rawLink(server.port, CLIENT_AUTH);
  cleanup(t, () => link.close());
  await assert.rejects(
    requestConnect(
      link,
      connectRequest('big', 1, { remotes: Array.from({ length: 300 }, (_, i) => String(20000 + i)) }),
    ),
    /connection request field "remotes" must be a list of at most 256 strings of at most 256 characters/,
  );
  await assert.rejects(requestConnect(link, connectRequest('big', 1, { tags: ['x'.repeat(300)] })), /field "tags"/);
});

test(
  'an upgrade rportd refuses (wrong subprotocol, a banned login) followed by a TCP reset does not end rportd',
  LIMIT,
  async (t) => {
    const server = await startServer(t, ['--max-failed-login', '1']);
    // One wrong password bans (127.0.0.6, client1): its upgrades naming client1 are refused with 403.
    const { closed } = rawSsh(
      server.port,
      'client1',
      [{ type: 'password', username: 'client1', password: 'wrong' } as never],
      {},
      '127.0.0.6',
    );
    await closed;
    const wrongProtocol = upgradeRequest(server.port, { 'Sec-WebSocket-Protocol': 'not-rport' });
    const banned = upgradeRequest(server.port, { 'X-Rport-Auth-Id': 'client1' });
    for (let i = 0; i < 30; i++) {
      await Promise.all([
        sendAndReset(server.port, wrongProtocol),
        sendAndReset(server.port, wrongProtocol, { after: 'answer' }),
        sendAndReset(server.port, banned, { from: '127.0.0.6' }),
        sendAndReset(server.port, banned, { from: '127.0.0.6', after: 'answer' }),
      ]);
    }
    await server.proc.waitFor(
      /refused a connection from 127\.0\.0\.6 for "client1": banned after too many failed logins/,
    );
    assert.equal(server.proc.exit, undefined, `rportd exited:\n${server.proc.output}`);
    const client = startClient(t, `127.0.0.1:${server.port}`);
    await client.waitFor(connected);
    assert.ok(!server.proc.lines.some((l) => / ERROR |Unhandled| {4}at /.test(l)), server.proc.output);
  },
);

test(
  'bidi overrides, zero-width and separator characters in a client id, name or login name reach the log escaped',
  LIMIT,
  async (t) => {
    const server = await startServerInProcess(t, ['--max-failed-login', '0']);
    // U+202E shows "evil\u202Egnp.exe" as "evilexe.png"; U+2066 opens an isolate; U+200B hides in a name.
    const id = 'evil\u202egnp.exe';
    const link = await rawLink(server.port, CLIENT_AUTH);
    cleanup(t, () => link.close());
    await requestConnect(link, connectRequest(id, 77, { name: 'n\u2066a\u200bme\u2069', tags: ['t\u202etag'] }));
    const { closed } = rawSsh(server.port, 'user\u202d\u2029x', [
      { type: 'password', username: 'user\u202d\u2029x', password: 'wrong' } as never,
    ]);
    await closed;
    await server.proc.waitFor(/client evil\\u202egnp\.exe \(n\\u2066a\\u200bme\\u2069\) connected/);
    await server.proc.waitFor(/failed login as "user\\u202d\\u2029x"/);
    const raw = server.proc.lines.filter((l) => /[\u200b-\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069]/.test(l));
    assert.deepEqual(raw, [], 'no line holds such a character raw');
  },
);
