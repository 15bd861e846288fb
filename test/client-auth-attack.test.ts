// Attacks on client logins and client identity, made the way the security review made them: hostile SSH
// peers inside rport's WebSocket, real rportd processes, real rport clients beside them.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { performance } from 'node:perf_hooks';
import test from 'node:test';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import bcrypt from 'bcryptjs';
import type { Link } from '../src/client/dial.js';
import { FAILED_CHECK_MIN_MS } from '../src/server/credentials.js';
import { METHOD, TUNNEL_BIND_PORT } from '../src/transport/protocol.js';
import {
  cleanup,
  eventually,
  metric,
  patient,
  startClient,
  startServer,
  tmpDir,
  writeFile,
  type ServerHandle,
} from '../harness/procs.js';
import { connectRequest, rawLink, rawSsh, requestConnect } from './helpers/raw-client.js';

const connected = /INFO {2}client: connected to /;
/** A regression may make a refused client connect and stay: fail then, do not hang. */
const LIMIT = { timeout: patient(90_000) };

/** Tries `passwords` as `user` on ONE SSH connection; resolves how many attempts the server answered. */
async function guessOnOneConnection(port: number, user: string, passwords: string[], from?: string): Promise<number> {
  let asked = 0;
  const { closed } = rawSsh(
    port,
    user,
    (_left, _partial, next) => {
      // ssh2 asks for the next attempt when the previous one was refused: each call after the first is an answer.
      if (asked >= passwords.length) return next(false as never);
      next({ type: 'password', username: user, password: passwords[asked++]! });
    },
    {},
    from,
  );
  await closed;
  return Math.max(0, asked - 1);
}

async function authFileServer(
  t: test.TestContext,
  extra: string[] = [],
  accounts: Record<string, string> = { c1: 'pass-one-1', c2: 'pass-two-2' },
): Promise<ServerHandle> {
  const file = writeFile(tmpDir(t), 'auth.json', JSON.stringify(accounts));
  return startServer(t, ['--auth-file', file, ...extra]);
}

test(
  '50 wrong passwords on one SSH connection: the server answers max_auth_tries of them, then closes it',
  LIMIT,
  async (t) => {
    const server = await startServer(t, ['--max-failed-login', '0', '--max-auth-tries', '3']);
    const answered = await guessOnOneConnection(
      server.port,
      'client1',
      Array.from({ length: 50 }, (_, i) => `guess-${i}`),
    );
    // Three refusals, then the fourth attempt is answered by closing the connection.
    assert.ok(answered <= 4, `${answered} password attempts were answered on one connection`);
    await server.proc.waitFor(
      /closing the connection from 127\.0\.0\.1: more than 3 login attempts on it \(\[server\] max_auth_tries\)/,
    );
  },
);

test(
  'a guesser at one id is banned for that id only: another client behind the same address still connects, and its success does not clear the ban',
  LIMIT,
  async (t) => {
    const server = await authFileServer(t, ['--max-failed-login', '3', '--ban-time', '1h']);
    for (let i = 0; i < 3; i++) await guessOnOneConnection(server.port, 'c1', [`wrong-${i}`]);
    const other = startClient(t, `127.0.0.1:${server.port}`, ['--auth', 'c2:pass-two-2', '--id', 'c2']);
    await other.waitFor(connected);
    // The guessed id stays banned from this address, even with its right password, after c2's success.
    const real = startClient(t, `127.0.0.1:${server.port}`, [
      '--auth',
      'c1:pass-one-1',
      '--id',
      'c1',
      '--max-retry-count',
      '0',
    ]);
    assert.equal((await real.exited).code, 1);
    assert.match(
      real.output,
      /HTTP 403 \(too many failed logins from 127\.0\.0\.1: banned for another (59m\d+s|1h0m0s)\)/,
    );
  },
);

test(
  'issue 21.7: spraying unknown ids, or failing API logins, from one address locks out no client and not the API admin behind it',
  LIMIT,
  async (t) => {
    const server = await authFileServer(t, ['--max-failed-login', '3']);
    // 12 unknown ids (max_failed_login x 4): the address may try no more unknown ids...
    for (let i = 0; i < 12; i++) await guessOnOneConnection(server.port, `spray-${i}`, ['x']);
    // ... but every client id that exists, whose own record is clean, still logs in from it.
    const c1 = startClient(t, `127.0.0.1:${server.port}`, ['--auth', 'c1:pass-one-1', '--id', 'c1']);
    await c1.waitFor(connected);
    await guessOnOneConnection(server.port, 'spray-late', ['x']);
    await eventually(
      async () => ((await metric(server, 'rport_handshake_failures_total{reason="banned"}')) >= 1 ? true : undefined),
      10_000,
      'the 13th unknown id refused as banned',
    );
    // Failed API logins (unknown users, then the admin's wrong password) ban API logins only.
    for (let i = 0; i < 12; i++) assert.equal((await server.api('/api/v1/status', `nobody-${i}:x`)).status, 401);
    assert.equal((await server.api('/api/v1/status')).status, 200, 'the API admin is not locked out by unknown users');
    // Unknown names stay 401 after that, as a wrong password would be: the answer does not tell the API's user name.
    assert.equal((await server.api('/api/v1/status', 'nobody-late:x')).status, 401);
    for (let i = 0; i < 5; i++) await server.api('/api/v1/status', 'admin:wrong');
    assert.equal(
      (await server.api('/api/v1/status')).status,
      429,
      'the admin pair is banned after [api] max_failed_login (5)',
    );
    const c2 = startClient(t, `127.0.0.1:${server.port}`, ['--auth', 'c2:pass-two-2', '--id', 'c2']);
    await c2.waitFor(connected);
  },
);

test(
  'issue 21.4: 100 connections guessing one id at the same moment get at most max_failed_login password checks',
  LIMIT,
  async (t) => {
    const server = await authFileServer(t, ['--max-failed-login', '5'], {
      hashed: bcrypt.hashSync('right-password', 10),
    });
    await Promise.all(
      Array.from({ length: 100 }, () => guessOnOneConnection(server.port, 'hashed', ['wrong-password'], '127.0.0.8')),
    );
    const checked = await metric(server, 'rport_handshake_failures_total{reason="auth"}');
    const refused = await metric(server, 'rport_handshake_failures_total{reason="banned"}');
    assert.ok(checked <= 5, `${checked} password checks for 100 parallel guesses`);
    assert.equal(checked + refused, 100, `${checked} checked + ${refused} refused as banned`);
  },
);

test('failed logins are written to the log once per minute with a count, not once each', LIMIT, async (t) => {
  const server = await startServer(t, ['--max-failed-login', '0']);
  for (let i = 0; i < 8; i++) await guessOnOneConnection(server.port, `user-${i}`, ['wrong']);
  await server.proc.waitFor(/failed login as "user-0" from 127\.0\.0\.1/);
  assert.equal(server.proc.lines.filter((l) => /failed login as/.test(l)).length, 1, server.proc.output);
});

test(
  'an unknown id is refused no sooner than a known one with a bcrypt hash: the timing does not tell which ids exist',
  LIMIT,
  async (t) => {
    const server = await authFileServer(t, ['--max-failed-login', '0'], {
      hashed: bcrypt.hashSync('right-password', 10),
    });
    const failTime = async (user: string) => {
      const t0 = performance.now();
      await guessOnOneConnection(server.port, user, ['wrong-password']);
      return performance.now() - t0;
    };
    const unknown = await failTime('no-such-id');
    const known = await failTime('hashed');
    assert.ok(unknown >= FAILED_CHECK_MIN_MS, `unknown id refused after ${unknown.toFixed(1)} ms`);
    assert.ok(known >= FAILED_CHECK_MIN_MS, `known id refused after ${known.toFixed(1)} ms`);
  },
);

test(
  "a client id cannot be taken with another client's credential; deleting the client frees the id",
  LIMIT,
  async (t) => {
    const server = await authFileServer(t);
    const owner = startClient(t, `127.0.0.1:${server.port}`, ['--auth', 'c1:pass-one-1', '--id', 'web-1']);
    await owner.waitFor(connected);
    await owner.stop();
    await eventually(async () =>
      (await server.api('/api/v1/clients/web-1')).body.data.connected === false ? true : undefined,
    );

    const impostor = startClient(t, `127.0.0.1:${server.port}`, [
      '--auth',
      'c2:pass-two-2',
      '--id',
      'web-1',
      '--max-retry-count',
      '0',
    ]);
    assert.equal((await impostor.exited).code, 1);
    const line =
      /client id "web-1" belongs to the credential "c1", not "c2": use c1's credential, or delete client "web-1" through the API to free the id/;
    assert.match(impostor.output, line);
    await server.proc.waitFor(line);

    const back = startClient(t, `127.0.0.1:${server.port}`, ['--auth', 'c1:pass-one-1', '--id', 'web-1']);
    await back.waitFor(connected);
    await back.stop();
    await eventually(async () =>
      (await server.api('/api/v1/clients/web-1')).body.data.connected === false ? true : undefined,
    );
    assert.equal((await server.api('/api/v1/clients/web-1', undefined, 'DELETE')).status, 204);
    const newOwner = startClient(t, `127.0.0.1:${server.port}`, ['--auth', 'c2:pass-two-2', '--id', 'web-1']);
    await newOwner.waitFor(connected);
    assert.equal((await server.api('/api/v1/clients/web-1')).body.data.auth_id, 'c2');
  },
);

test(
  'issue 21.9: a credential cannot squat the id of another credential that has not connected yet; the real one registers it',
  LIMIT,
  async (t) => {
    const server = await authFileServer(t, [], { c1: 'pass-one-1', c2: 'pass-two-2', c3: 'pass-three-3' });
    const squatter = startClient(t, `127.0.0.1:${server.port}`, [
      '--auth',
      'c2:pass-two-2',
      '--id',
      'c3',
      '--max-retry-count',
      '0',
    ]);
    assert.equal((await squatter.exited).code, 1);
    assert.match(
      squatter.output,
      /client id "c3" is the id of the credential "c3", so only that credential may use it, not "c2"/,
    );
    const real = startClient(t, `127.0.0.1:${server.port}`, ['--auth', 'c3:pass-three-3', '--id', 'c3']);
    await real.waitFor(connected);
    assert.equal((await server.api('/api/v1/clients/c3')).body.data.auth_id, 'c3');
  },
);

test(
  'a squat from before the own-id rule (c2 registered id "c3") is undone when c3 connects: the id is c3\'s from then on',
  LIMIT,
  async (t) => {
    const file = writeFile(tmpDir(t), 'auth.json', JSON.stringify({ c2: 'pass-two-2', c3: 'pass-three-3' }));
    const first = await startServer(t, ['--auth-file', file]);
    await first.proc.stop();
    const db = new Database(join(first.dataDir, 'rportd.db'));
    db.prepare("INSERT INTO clients (id, name, auth_id) VALUES ('c3', 'squatted', 'c2')").run();
    db.close();
    const server = await startServer(t, ['--auth-file', file], {
      port: first.port,
      apiPort: first.apiPort,
      dataDir: first.dataDir,
    });
    const real = startClient(t, `127.0.0.1:${server.port}`, ['--auth', 'c3:pass-three-3', '--id', 'c3']);
    await real.waitFor(connected);
    assert.equal((await server.api('/api/v1/clients/c3')).body.data.auth_id, 'c3');
  },
);

test('auth_multiuse_creds = false: one credential, one client id', LIMIT, async (t) => {
  const server = await authFileServer(t, ['--auth-multiuse-creds=false']);
  const first = startClient(t, `127.0.0.1:${server.port}`, ['--auth', 'c2:pass-two-2', '--id', 'first']);
  await first.waitFor(connected);
  const second = startClient(t, `127.0.0.1:${server.port}`, [
    '--auth',
    'c2:pass-two-2',
    '--id',
    'second',
    '--max-retry-count',
    '0',
  ]);
  assert.equal((await second.exited).code, 1);
  assert.match(
    second.output,
    /credential "c2" is already used by client "first" \(\[server\] auth_multiuse_creds = false\)/,
  );
});

test(
  '50 connection requests racing for one id whose old session hangs: one wins, the rest are refused, no ghost session, no leaked tunnel port',
  LIMIT,
  async (t) => {
    const server = await startServer(t, ['--check-clients-connection-timeout', '2s']);
    const stale = await rawLink(server.port, 'client1:s3cret');
    cleanup(t, () => stale.close());
    answerTunnels(stale);
    await requestConnect(stale, connectRequest('racer', 999, { remotes: ['9'] }));
    stale.control.handle(METHOD.ping, () => new Promise(() => undefined)); // hangs from now on

    const links = await Promise.all(Array.from({ length: 50 }, () => rawLink(server.port, 'client1:s3cret')));
    cleanup(t, () => links.forEach((l) => l.close()));
    links.forEach(answerTunnels);
    const results = await Promise.allSettled(
      links.map((l, i) => requestConnect(l, connectRequest('racer', 1000 + i, { remotes: ['9'] }))),
    );
    const won = results.filter((r) => r.status === 'fulfilled');
    assert.equal(won.length, 1, `${won.length} sessions accepted for one id`);
    for (const r of results)
      if (r.status === 'rejected')
        assert.match(String(r.reason), /client id "racer" is already connected from 127\.0\.0\.1/);

    const tunnels = await eventually(async () => {
      const list = (await server.api('/api/v1/clients/racer/tunnels')).body.data as Array<{
        local: string;
        listening: boolean;
      }>;
      return list.length === 1 && list[0]!.listening ? list : undefined;
    });
    const port = Number(tunnels[0]!.local.split(':').pop());
    stale.close();
    links.forEach((l) => l.close());
    await eventually(async () =>
      (await server.api('/api/v1/clients/racer')).body.data.connected === false ? true : undefined,
    );
    // Every listener of the id is closed with its last session: the port can be bound again.
    await eventually(
      () =>
        new Promise<true | undefined>((resolve) => {
          const probe = createServer();
          probe.once('error', () => resolve(undefined));
          probe.listen(port, '0.0.0.0', () => probe.close(() => resolve(true)));
        }),
      10_000,
      `tunnel port ${port} free`,
    );
  },
);

/** Agrees to every tunnel the server asks for, as a client with an empty tunnel_allowed would. */
function answerTunnels(link: Link): void {
  link.control.handle(
    METHOD.tunnelOpen,
    (p) =>
      new Promise((resolve, reject) => {
        const { id, remote } = p as { id: string; remote: string };
        link.ssh.forwardIn(id, TUNNEL_BIND_PORT, (err) => (err ? reject(err) : resolve({ remote })));
      }),
  );
}
