// Connections reset (TCP RST) at every stage on every listener rportd has: the client port (before, during
// and after the request line and headers, after a refusal, mid-upgrade, mid-SSH handshake, mid-channel),
// the API (the same, a body cut short, an event stream, the cluster routes) and a tunnel port, hundreds of
// times and at random points. rportd must keep serving, log nothing at error level and keep no sockets or
// memory of them. `npm test` runs a bounded number of rounds; `npm run fuzz` goes on for FUZZ_SECONDS.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import test from 'node:test';
import { CONTROL_SUBSYSTEM, METHOD } from '../src/transport/protocol.js';
import { STACK_FRAME } from './fuzz/engine.js';
import {
  API_AUTH,
  CLIENT_AUTH,
  echoServer,
  eventually,
  freePort,
  patient,
  startClient,
  startServer,
  type ServerHandle,
} from '../harness/procs.js';
import { connectRequest, rawSsh, resetWs, sendAndReset, upgradeRequest } from './helpers/raw-client.js';

/** Rounds in `npm test` (each resets about 40 connections); FUZZ_SECONDS adds rounds for that long. */
const ROUNDS = 8;
const seconds = Number(process.env.FUZZ_SECONDS ?? 0);
const LIMIT = { timeout: patient(120_000) + seconds * 2000 };
const connected = /INFO {2}client: connected to /;
const [user, password] = CLIENT_AUTH.split(':') as [string, string];
const basic = `Basic ${Buffer.from(API_AUTH).toString('base64')}`;
/** The address whose logins as client1 are banned (max_failed_login 1), for refusals of banned upgrades. */
const BANNED_FROM = '127.0.0.6';

/** Reads /proc of a process that must still run: one clear failure with its last lines if it does not. */
function proc<T>(server: ServerHandle, read: (pid: number) => T): T {
  try {
    return read(server.proc.pid);
  } catch {
    return assert.fail(`rportd exited:\n${server.proc.lines.slice(-20).join('\n')}`);
  }
}
const fds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;
const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
const random = (n: number) => Math.floor(Math.random() * n);
const cut = (text: string) => text.slice(0, 1 + random(text.length - 1));

/** An SSH login inside the WebSocket, reset when `stage` is reached (or at once, if the connection ends first). */
function sshReset(
  port: number,
  stage: 'handshake' | 'password' | 'ready' | 'channel' | 'session' | 'random',
): Promise<void> {
  const { ssh, ws, closed } = rawSsh(port, user, [{ type: 'password', username: user, password } as never]);
  const reset = () => resetWs(ws);
  if (stage === 'random') setTimeout(reset, random(40));
  else if (stage === 'handshake') ssh.once('handshake', reset);
  else if (stage === 'password') ssh.once('handshake', () => setImmediate(reset));
  else
    ssh.once('ready', () => {
      if (stage === 'ready') return reset();
      ssh.subsys(CONTROL_SUBSYSTEM, (err, ch) => {
        if (err) return reset();
        if (stage === 'channel') {
          ch.write('{"id":1,"method":"connect","par');
          return setImmediate(reset);
        }
        // A whole connection request, then gone: the same process each time, so each replaces the last.
        ch.write(
          JSON.stringify({ id: 1, method: METHOD.connect, params: connectRequest('reset-victim', 4242) }) + '\n',
        );
        ch.once('data', reset);
      });
    });
  ws.once('close', () => ssh.end());
  // A stage the server never answers must not hang the test: reset after 10 s in any case.
  const bound = setTimeout(reset, 10_000);
  return closed.then(() => clearTimeout(bound));
}

/** Bytes to a tunnel port, reset at once or after the echo came back through the client. */
function tunnelReset(port: number, afterEcho: boolean): Promise<void> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => {
      s.write('through the tunnel');
      if (!afterEcho) s.resetAndDestroy();
      else s.once('data', () => s.resetAndDestroy());
    });
    s.setTimeout(10_000, () => s.resetAndDestroy());
    s.on('error', () => undefined);
    s.once('close', () => resolve());
  });
}

function stages(server: ServerHandle, tunnelPort: number): Array<() => Promise<void>> {
  const c = server.port;
  const a = server.apiPort;
  const upgrade = upgradeRequest(c);
  const apiGet = (path: string, auth = true) =>
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${a}\r\n${auth ? `Authorization: ${basic}\r\n` : ''}\r\n`;
  const apiPost = (path: string, body: string, length = body.length) =>
    `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:${a}\r\nAuthorization: ${basic}\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n${body}`;
  const job = apiPost('/api/v1/cluster/jobs/j1/run', '{}');
  return [
    // The client port.
    () => sendAndReset(c, ''),
    () => sendAndReset(c, 'GET / HT'),
    () => sendAndReset(c, 'GET / HTTP/1.1\r\n'),
    () => sendAndReset(c, upgrade.slice(0, upgrade.length / 2)),
    () => sendAndReset(c, upgrade),
    () => sendAndReset(c, upgrade, { after: 'answer' }),
    () => sendAndReset(c, cut(upgrade)),
    () => sendAndReset(c, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', { after: 'answer' }),
    () => sendAndReset(c, upgradeRequest(c, { 'Sec-WebSocket-Protocol': 'not-rport' })),
    () => sendAndReset(c, upgradeRequest(c, { 'Sec-WebSocket-Protocol': 'not-rport' }), { after: 'answer' }),
    () => sendAndReset(c, upgradeRequest(c, { 'X-Rport-Auth-Id': user }), { from: BANNED_FROM }),
    () => sendAndReset(c, upgradeRequest(c, { 'X-Rport-Auth-Id': user }), { from: BANNED_FROM, after: 'answer' }),
    () =>
      sendAndReset(
        c,
        Buffer.concat([Buffer.from(upgrade), Buffer.from([0x82, 0x85, 1, 2, 3, 4, 0x52, 0x51, 0x50, 0x29, 0x33])]),
      ),
    () => sshReset(c, 'handshake'),
    () => sshReset(c, 'password'),
    () => sshReset(c, 'ready'),
    () => sshReset(c, 'channel'),
    () => sshReset(c, 'session'),
    () => sshReset(c, 'random'),
    // The API.
    () => sendAndReset(a, ''),
    () => sendAndReset(a, 'GET /api/v1/sta'),
    () => sendAndReset(a, 'GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthor'),
    () => sendAndReset(a, apiGet('/api/v1/status')),
    () => sendAndReset(a, apiGet('/api/v1/status', false), { after: 'answer' }),
    () => sendAndReset(a, apiGet('/api/v1/clients'), { after: 'answer' }),
    () => sendAndReset(a, cut(apiGet('/api/v1/clients'))),
    () => sendAndReset(a, apiPost('/api/v1/clients-auth', '{"id":"x","pass', 1000)),
    () => sendAndReset(a, apiGet('/api/v1/events'), { after: 'answer' }),
    () => sendAndReset(a, apiGet('/'), { after: 'answer' }),
    () => sendAndReset(a, job),
    () => sendAndReset(a, job, { after: 'answer' }),
    () =>
      sendAndReset(
        a,
        apiPost(
          '/api/v1/cluster/clients/c1/takeover',
          '{"pid":1,"process_start":1,"hostname":"h","address":"a","node_id":"n"}',
        ),
        { after: 'answer' },
      ),
    () => sendAndReset(a, apiGet('/api/v1/cluster'), { after: 'answer' }),
    // A tunnel port.
    () => sendAndReset(tunnelPort, ''),
    () => tunnelReset(tunnelPort, false),
    () => tunnelReset(tunnelPort, true),
  ];
}

test(
  'resets at every stage on the client port, the API, the cluster routes and a tunnel port: rportd keeps serving, logs no error, keeps no sockets or memory',
  LIMIT,
  async (t) => {
    const echo = await echoServer(t);
    const tunnelPort = await freePort();
    const server = await startServer(t, [
      '--log-level',
      'info',
      '--max-failed-login',
      '1',
      '--used-ports',
      `20000-30000,${tunnelPort}`,
    ]);
    const { closed } = rawSsh(
      server.port,
      user,
      [{ type: 'password', username: user, password: 'wrong' } as never],
      {},
      BANNED_FROM,
    );
    await closed;
    const carrier = startClient(t, `127.0.0.1:${server.port}`, [
      '--id',
      'carrier',
      '--remotes',
      `127.0.0.1:${tunnelPort}:127.0.0.1:${echo}`,
    ]);
    await carrier.waitFor(connected);
    await eventually(
      async () =>
        (await server.api('/api/v1/clients/carrier/tunnels')).body.data.some((x: { listening: boolean }) => x.listening)
          ? true
          : undefined,
      10_000,
      'the tunnel listening',
    );

    const all = stages(server, tunnelPort);
    const round = () => Promise.all(all.map((stage) => stage()));
    // Open files counted before any reset; RSS after one round: what V8 and SQLite grow once is not a leak.
    const fdsBefore = proc(server, fds);
    await round();
    const rssBefore = proc(server, rssMiB);
    let resets = all.length;
    const end = Date.now() + seconds * 1000;
    // A long run (npm run fuzz) grows to a plateau of V8's and malloc's sizing (85 MiB in 150 s, flat for its
    // second half): a leak is what still grows after the first half.
    let rssHalf: number | undefined;
    for (let i = 0; i < ROUNDS || Date.now() < end; i++) {
      if (seconds > 0 && rssHalf === undefined && Date.now() > end - (seconds * 1000) / 2)
        rssHalf = proc(server, rssMiB);
      await round();
      // And as many at random stages, all at once.
      await Promise.all(all.map(() => all[random(all.length)]!()));
      resets += 2 * all.length;
      proc(server, fds);
    }
    t.diagnostic(`${resets} connections reset`);

    assert.equal(server.proc.exit, undefined, `rportd exited:\n${server.proc.output}`);
    // The stages got as far as they meant to: a refusal of the banned pair, a whole session.
    await server.proc.waitFor(/refused a connection from 127\.0\.0\.6 for "client1"/);
    await server.proc.waitFor(/client reset-victim \(reset-victim\) connected/);
    const client = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'after-resets']);
    await client.waitFor(connected);
    assert.equal((await server.api('/api/v1/status')).status, 200);
    await tunnelReset(tunnelPort, true);
    const bad = server.proc.lines.filter(
      (l) => / ERROR /.test(l) || STACK_FRAME.test(l) || /Unhandled|uncaught/i.test(l),
    );
    assert.deepEqual(bad, [], 'no error line, no stack frame');
    // Sockets go as their peers vanish; the clients started here add a few.
    await eventually(
      () => (proc(server, fds) <= fdsBefore + 16 ? true : undefined),
      30_000,
      `rportd's open files back near ${fdsBefore}`,
    );
    const grown = proc(server, rssMiB) - rssBefore;
    t.diagnostic(`open files: ${fdsBefore} before, ${proc(server, fds)} after; RSS grew by ${grown.toFixed(1)} MiB`);
    if (rssHalf === undefined)
      assert.ok(grown < 64, `rportd's RSS grew by ${grown.toFixed(1)} MiB over ${resets} resets`);
    else {
      const late = proc(server, rssMiB) - rssHalf;
      t.diagnostic(`RSS grew by ${late.toFixed(1)} MiB in the run's second half`);
      assert.ok(
        late < 24,
        `rportd's RSS still grew by ${late.toFixed(1)} MiB in the second half of ${resets} resets: a leak`,
      );
    }
  },
);
