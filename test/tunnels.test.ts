import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes, createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { connect, createServer, type AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import {
  cleanup,
  eventually,
  freePort,
  patient,
  startClient,
  startServer,
  tmpDir,
  API_AUTH,
  type AnyServer,
} from '../harness/procs.js';
import { sshdPath, startSshd } from '../harness/sshd.js';

const connected = /INFO {2}client: connected to (\S+) within/;

async function echoServer(t: TestContext): Promise<number> {
  const srv = createServer((s) => s.pipe(s));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  cleanup(t, () => new Promise((r) => srv.close(r)));
  return (srv.address() as AddressInfo).port;
}

async function openTunnel(server: AnyServer, client: string, query: string): Promise<{ status: number; body: any }> {
  return server.api(`/api/v1/clients/${client}/tunnels?${query}`, API_AUTH, 'PUT');
}

/** Sends `data` through the port and reads back as many bytes; resolves their sha256. */
function roundTrip(port: number, data: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const s = connect(port, '127.0.0.1', () => s.end(data));
    s.on('data', (b) => {
      chunks.push(b);
      got += b.length;
      if (got >= data.length) s.destroy();
    });
    s.on('close', () =>
      got === data.length
        ? resolve(createHash('sha256').update(Buffer.concat(chunks)).digest('hex'))
        : reject(new Error(`got ${got} of ${data.length} bytes`)),
    );
    s.on('error', reject);
    s.setTimeout(patient(20_000), () => s.destroy(new Error('round trip timed out')));
  });
}

test('curl through a tunnel to a local HTTP server; list and delete it through the API', async (t) => {
  const http = createHttpServer((req, res) => res.end(`hello from behind the NAT: ${req.url}`));
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  cleanup(t, () => new Promise((r) => http.close(() => r(undefined))));
  const server = await startServer(t);
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'web']);
  await client.waitFor(connected);
  const r = await openTunnel(
    server,
    'web',
    `remote=127.0.0.1:${(http.address() as AddressInfo).port}&local=127.0.0.1:0`,
  );
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const port = Number(r.body.data.local.split(':').pop());
  assert.ok(port >= 20000 && port <= 30000, `port ${port} from used_ports`);
  const out = await promisify(execFile)('curl', ['-sS', '--max-time', '10', `http://127.0.0.1:${port}/x?y=1`]);
  assert.equal(out.stdout, 'hello from behind the NAT: /x?y=1');
  const list = await server.api('/api/v1/clients/web/tunnels');
  assert.equal(list.body.data.length, 1);
  assert.equal(list.body.data[0].connections, 1);
  assert.ok(list.body.data[0].bytes_out > 0);
  const del = await server.api(`/api/v1/clients/web/tunnels/${r.body.data.id}`, API_AUTH, 'DELETE');
  assert.equal(del.status, 204);
  await assert.rejects(
    promisify(execFile)('curl', ['-sS', '--max-time', '5', `http://127.0.0.1:${port}/`]),
    /Failed to connect|Connection refused|couldn't connect/i,
  );
  assert.equal((await server.api('/api/v1/clients/web/tunnels/nope', API_AUTH, 'DELETE')).status, 404);
});

test('100 concurrent connections through one tunnel, each byte-exact', async (t) => {
  const echo = await echoServer(t);
  const server = await startServer(t);
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'echo']);
  await client.waitFor(connected);
  const r = await openTunnel(server, 'echo', `remote=127.0.0.1:${echo}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const port = Number(r.body.data.local.split(':').pop());
  const payloads = Array.from({ length: 100 }, (_, i) => randomBytes(64 * 1024 + i * 1024));
  const sums = await Promise.all(payloads.map((p) => roundTrip(port, p)));
  sums.forEach((s, i) => assert.equal(s, createHash('sha256').update(payloads[i]!).digest('hex'), `stream ${i}`));
});

test('tunnel_allowed: a target the client does not allow is refused, with a clear API error', async (t) => {
  const echo = await echoServer(t);
  const server = await startServer(t);
  const client = startClient(t, `127.0.0.1:${server.port}`, [
    '--id',
    'strict',
    '--tunnel-allowed',
    `10.0.0.0/8,127.0.0.1:${echo}`,
  ]);
  await client.waitFor(connected);
  assert.equal((await openTunnel(server, 'strict', `remote=127.0.0.1:${echo}`)).status, 200);
  const refused = await openTunnel(server, 'strict', 'remote=127.0.0.1:22');
  assert.equal(refused.status, 403);
  assert.deepEqual(refused.body, {
    errors: [
      {
        code: 'tunnel_refused',
        title: "client strict refused: tunnel to 127.0.0.1:22 is not allowed by the client's [client] tunnel_allowed",
        detail: '',
      },
    ],
  });
  await client.waitFor(
    /WARN {2}tunnels: refused a tunnel to 127\.0\.0\.1:22: not allowed by \[client\] tunnel_allowed/,
  );
});

test('acl: connections from addresses outside it are closed', async (t) => {
  const echo = await echoServer(t);
  const server = await startServer(t);
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'acl']);
  await client.waitFor(connected);
  const closed = await openTunnel(server, 'acl', `remote=127.0.0.1:${echo}&acl=10.0.0.0/8`);
  await assert.rejects(
    roundTrip(Number(closed.body.data.local.split(':').pop()), Buffer.from('x')),
    /got 0 of 1|ECONNRESET|EPIPE/,
  );
  const open = await openTunnel(server, 'acl', `remote=127.0.0.1:${echo}&acl=10.0.0.0/8,127.0.0.0/8`);
  await roundTrip(Number(open.body.data.local.split(':').pop()), Buffer.from('ok'));
  await server.proc.waitFor(/refused a connection from 127\.0\.0\.1: not in its acl/);
});

test('client-defined [client] remotes; tunnels back on the same ports after a reconnect; ports free as soon as the server sees the client die', async (t) => {
  const echo = await echoServer(t);
  const fixed = await freePort();
  const server = await startServer(t, ['--used-ports', `20000-30000,${fixed}`]); // an explicit port must be in used_ports
  const args = ['--id', 'keeper', '--remotes', `127.0.0.1:${fixed}:127.0.0.1:${echo}`];
  let client = startClient(t, `127.0.0.1:${server.port}`, args);
  await client.waitFor(connected);
  await eventually(
    async () =>
      (await server.api('/api/v1/clients/keeper/tunnels')).body.data.some((x: any) => x.listening) ? true : undefined,
    5000,
    'client-defined tunnel',
  );
  const apiTunnel = await openTunnel(server, 'keeper', `remote=127.0.0.1:${echo}`);
  const apiPort = Number(apiTunnel.body.data.local.split(':').pop());
  await roundTrip(fixed, Buffer.from('one'));
  await roundTrip(apiPort, Buffer.from('two'));

  const held = connect(apiPort, '127.0.0.1');
  await new Promise((r) => held.once('connect', r));
  const heldClosed = new Promise((r) => held.once('close', r));
  held.on('error', () => undefined); // the client's death resets it (test/tunnel-abort.test.ts)
  client.kill('SIGKILL');
  // Released as the server sees the connection end, not at the liveness check (5m by default), which
  // would be the other way a dead client is noticed.
  await server.proc.waitFor(/client keeper disconnected \(127\.0\.0\.1\)/, 5000);
  const refused = await Promise.all(
    [fixed, apiPort].map(
      (p) =>
        new Promise<boolean>((r) => {
          const s = connect(p, '127.0.0.1');
          s.once('connect', () => {
            s.destroy();
            r(false);
          });
          s.once('error', () => r(true));
        }),
    ),
  );
  assert.deepEqual(refused, [true, true], 'both tunnel ports released by the time the disconnect is logged');
  await heldClosed; // open connections end when the client goes

  client = startClient(t, `127.0.0.1:${server.port}`, args);
  await client.waitFor(connected);
  await eventually(
    async () =>
      (await server.api('/api/v1/clients/keeper/tunnels')).body.data.filter((x: any) => x.listening).length === 2
        ? true
        : undefined,
    5000,
    'tunnels listening again',
  );
  await roundTrip(fixed, Buffer.from('three'));
  await roundTrip(apiPort, Buffer.from('four'));
});

test('API errors: JSON with the right status and the bad field named', async (t) => {
  const server = await startServer(t);
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'e']);
  await client.waitFor(connected);
  let r = await openTunnel(server, 'e', 'local=1234');
  assert.equal(r.status, 400);
  assert.equal(r.body.errors[0].code, 'bad_request');
  assert.match(r.body.errors[0].title, /remote/);
  r = await openTunnel(server, 'e', 'remote=nohost');
  assert.equal(r.status, 400);
  assert.match(r.body.errors[0].title, /querystring field "remote" must match pattern/);
  r = await openTunnel(server, 'e', 'remote=127.0.0.1:22&idle_timeout=soon');
  assert.deepEqual(r.body, {
    errors: [
      {
        code: 'bad_request',
        title: `querystring field "idle_timeout" = "soon" is not a duration (use e.g. '30m')`,
        detail: '',
      },
    ],
  });
  r = await openTunnel(server, 'nobody', 'remote=127.0.0.1:22');
  assert.equal(r.status, 409);
  assert.equal(r.body.errors[0].code, 'client_not_connected');
  r = await server.api('/api/v1/clients/nobody');
  assert.equal(r.status, 404);
  r = await server.api('/api/v1/clients', 'admin:nope');
  assert.deepEqual([r.status, r.body.errors[0].code], [401, 'unauthorized']);
  r = await server.api('/api/v1/clients/e/tunnels?remote=127.0.0.1:22', '', 'PUT');
  assert.equal(r.status, 401);
  r = await server.api('/api/v2/else');
  assert.deepEqual([r.status, r.body.errors[0].code], [404, 'not_found']);
});

test(
  'OpenSSH ssh through a tunnel to a real sshd',
  { skip: (!sshdPath() && 'openssh-server is not installed') || (process.getuid?.() !== 0 && 'sshd needs root here') },
  async (t) => {
    const { port: sshPort, userKey } = await startSshd(tmpDir(t), (fn) => cleanup(t, fn));

    const server = await startServer(t);
    const client = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'ssh-target', '--remotes', `${sshPort}`]);
    await client.waitFor(connected);
    const tunnel = await eventually(
      async () => (await server.api('/api/v1/clients/ssh-target/tunnels')).body.data.find((x: any) => x.listening),
      5000,
      'tunnel',
    );
    const port = tunnel.local.split(':').pop();
    const out = await promisify(execFile)(
      'ssh',
      [
        '-i',
        userKey,
        '-p',
        port,
        '-o',
        'StrictHostKeyChecking=no',
        '-o',
        'UserKnownHostsFile=/dev/null',
        '-o',
        'BatchMode=yes',
        '-o',
        'ConnectTimeout=10',
        'root@127.0.0.1',
        'echo',
        'hello through rport',
      ],
      { timeout: patient(20_000) },
    );
    assert.equal(out.stdout.trim(), 'hello through rport');
  },
);

test('idle_timeout: a tunnel without connections for that long is deleted', async (t) => {
  const echo = await echoServer(t);
  const server = await startServer(t);
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'idle']);
  await client.waitFor(connected);
  const r = await openTunnel(server, 'idle', `remote=127.0.0.1:${echo}&idle_timeout=1s`);
  assert.equal(r.body.data.idle_timeout_sec, 1);
  await roundTrip(Number(r.body.data.local.split(':').pop()), Buffer.from('still used'));
  await server.proc.waitFor(new RegExp(`tunnel ${r.body.data.id} idle for 1s: deleting it`), 5000);
  assert.deepEqual((await server.api('/api/v1/clients/idle/tunnels')).body.data, []);
});

test(
  'no file descriptor leaks: rportd is back to its count after 200 tunnel connections and a client reconnect',
  { skip: !existsSync('/proc/self/fd') && 'needs /proc' },
  async (t) => {
    const { readdirSync } = await import('node:fs');
    const fds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;
    const echo = await echoServer(t);
    const server = await startServer(t);
    const args = ['--id', 'fd-client', '--keep-alive', '0s'];
    let client = startClient(t, `127.0.0.1:${server.port}`, args);
    await client.waitFor(connected);
    const r = await openTunnel(server, 'fd-client', `remote=127.0.0.1:${echo}`);
    const port = Number(r.body.data.local.split(':').pop());
    await roundTrip(port, Buffer.from('warm-up'));
    const before = fds(server.proc.pid);
    for (let round = 0; round < 4; round++)
      await Promise.all(Array.from({ length: 50 }, () => roundTrip(port, randomBytes(4096))));
    await client.stop();
    client = startClient(t, `127.0.0.1:${server.port}`, args);
    await client.waitFor(connected);
    await eventually(
      async () => ((await server.api('/api/v1/clients/fd-client/tunnels')).body.data[0]?.listening ? true : undefined),
      5000,
    );
    await roundTrip(port, Buffer.from('after'));
    const after = await eventually(
      () => {
        const n = fds(server.proc.pid);
        return n <= before + 2 ? n : undefined;
      },
      5000,
      `fd count back near ${before}`,
    );
    t.diagnostic(`rportd file descriptors: ${before} before, ${after} after`);
  },
);
