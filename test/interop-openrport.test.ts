import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { openrportClientConf } from '../harness/openrport.js';
import { runJob } from './helpers/jobs-api.js';
import { exchange, OPENRPORT_BIN, openrportSkip, realServer } from './helpers/openrport.js';
import {
  eventually,
  freePort,
  runProgram,
  startClient,
  startServer,
  target,
  tmpDir,
  writeFile,
  API_AUTH,
  CLIENT_AUTH,
  type ServerHandle,
} from '../harness/procs.js';

const BIN = OPENRPORT_BIN;
const skip = openrportSkip('interop-openrport');

const SEED = 'interop-key-seed';
const [AUTH_ID, AUTH_PW] = CLIENT_AUTH.split(':') as [string, string];

/** The MD5 fingerprint a real rportd with this key_seed logs (what every stock client in the field pins). */
async function realFingerprint(t: TestContext, seed: string): Promise<string> {
  const real = await realServer(t, seed);
  await real.proc.stop();
  return real.fingerprint;
}

interface StockOptions {
  id: string;
  fingerprint: string;
  password?: string;
  tunnelAllowed?: string;
  /** [client] remotes, as RPort writes them. */
  remotes?: string[];
  updatesInterval?: string;
  /** The client's PATH (its package-manager checks look there). */
  path?: string;
}

/** The real RPort client with an rport.conf as RPort users write it. */
function stockClient(t: TestContext, server: ServerHandle, o: StockOptions) {
  const dir = tmpDir(t, 'openrport-client-');
  const conf = writeFile(
    dir,
    'rport.conf',
    openrportClientConf({
      server: `127.0.0.1:${server.port}`,
      fingerprint: o.fingerprint,
      auth: `${AUTH_ID}:${o.password ?? AUTH_PW}`,
      id: o.id,
      dir,
      tunnelAllowed: o.tunnelAllowed ?? '127.0.0.1',
      remotes: o.remotes ?? [],
      logLevel: 'debug',
      updatesInterval: o.updatesInterval,
    }),
  );
  if (o.path !== undefined) return runProgram(t, '/usr/bin/env', [`PATH=${o.path}`, join(BIN, 'rport'), '-c', conf]);
  return runProgram(t, join(BIN, 'rport'), ['-c', conf]);
}

async function listed(server: ServerHandle, id: string): Promise<any> {
  return eventually(
    async () => {
      const r = await server.api(`/api/v1/clients/${id}`);
      return r.status === 200 && r.body.data.connection_state === 'connected' ? r.body.data : undefined;
    },
    30_000,
    `client ${id} listed as connected`,
  );
}

async function tunnel(server: ServerHandle, client: string, remotePort: number): Promise<number> {
  const r = await server.api(
    `/api/v1/clients/${client}/tunnels?remote=127.0.0.1:${remotePort}&local=127.0.0.1:0`,
    API_AUTH,
    'PUT',
  );
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return Number(r.body.data.local.split(':').pop());
}

test(
  "a stock RPort client pinned to a real rportd's fingerprint connects to rportd of the same key_seed, and its tunnels carry bytes both ways",
  { skip },
  async (t) => {
    const fingerprint = await realFingerprint(t, SEED);
    const server = await startServer(t, ['--key-seed', SEED]);
    await server.proc.waitFor(new RegExp(`${fingerprint} in the MD5 form RPort clients pin`));
    stockClient(t, server, { id: 'stock-tunnel', fingerprint });
    const view = await listed(server, 'stock-tunnel');
    assert.equal(view.name, 'stock stock-tunnel');
    await server.proc.waitFor(/client stock-tunnel \(stock stock-tunnel\) connected from 127\.0\.0\.1 as client1/);

    // The target sends back each byte transformed, so both directions are checked.
    const port = await tunnel(
      server,
      'stock-tunnel',
      await target(t, (s) => s.on('data', (b: Buffer) => s.write(b.map((x) => 255 - x)))),
    );
    const sent = Buffer.from(Array.from({ length: 300_000 }, (_, i) => i % 251));
    const r = await exchange(port, sent, sent.length);
    assert.equal(r.how, 'complete', `got ${r.got.length} bytes back of ${sent.length}`);
    assert.ok(r.got.equals(sent.map((x) => 255 - x)));
  },
);

test("a stock RPort client: a target's reset reaches the user as a reset", { skip }, async (t) => {
  const server = await startServer(t, ['--key-seed', SEED]);
  const fp = /([0-9a-f]{2}(?::[0-9a-f]{2}){15}) in the MD5 form/.exec(server.proc.output)![1]!;
  stockClient(t, server, { id: 'stock-reset', fingerprint: fp.slice(0, 11) });
  await listed(server, 'stock-reset');
  const port = await tunnel(server, 'stock-reset', await target(t, (s) => s.once('data', () => s.resetAndDestroy())));
  const r = await exchange(port, Buffer.from('hello'), 1);
  assert.equal(r.how, 'ECONNRESET', `the user's connection ended with "${r.how}"`);
});

test(
  "a stock RPort client runs a command and a script through rportd's API, with their output",
  { skip },
  async (t) => {
    const server = await startServer(t, ['--key-seed', SEED]);
    const fp = /([0-9a-f]{2}(?::[0-9a-f]{2}){15}) in the MD5 form/.exec(server.proc.output)![1]!;
    stockClient(t, server, { id: 'stock-jobs', fingerprint: fp });
    await listed(server, 'stock-jobs');
    const cmd = await runJob(server, 'stock-jobs', { command: '/usr/bin/printf interop-out', timeout_sec: 30 });
    assert.equal(cmd.status, 'successful', JSON.stringify(cmd));
    assert.equal(cmd.result.stdout, 'interop-out');
    const script = await runJob(
      server,
      'stock-jobs',
      {
        script: Buffer.from('echo script-out\necho script-err >&2\nexit 3\n').toString('base64'),
        interpreter: 'sh',
        timeout_sec: 30,
      },
      'scripts',
    );
    assert.equal(script.status, 'failed', JSON.stringify(script));
    assert.equal(script.result.stdout, 'script-out\n');
    assert.equal(script.result.stderr, 'script-err\n');
    const refused = await runJob(server, 'stock-jobs', { command: '/opt/not-allowed', timeout_sec: 30 });
    assert.equal(refused.status, 'failed');
    assert.match(refused.error ?? '', /command is not allowed/);
  },
);

test(
  'a stock RPort client reconnects after rportd restarts; a wrong password is refused and logged',
  { skip },
  async (t) => {
    const dataDir = tmpDir(t, 'rportd-data-');
    const fixed = { port: await freePort(), apiPort: await freePort(), dataDir };
    const first = await startServer(t, ['--key-seed', SEED], fixed);
    const fp = /([0-9a-f]{2}(?::[0-9a-f]{2}){15}) in the MD5 form/.exec(first.proc.output)![1]!;
    const client = stockClient(t, first, { id: 'stock-back', fingerprint: fp });
    await listed(first, 'stock-back');
    await first.proc.stop();
    const mark = client.mark();
    const second = await startServer(t, ['--key-seed', SEED], fixed);
    await listed(second, 'stock-back');
    await client.waitFor(/Connected to 127\.0\.0\.1/, 30_000, mark);

    const wrong = stockClient(t, second, { id: 'stock-wrong', fingerprint: fp, password: 'not-the-password' });
    await second.proc.waitFor(/failed login as "client1" from 127\.0\.0\.1/, 30_000);
    await wrong.waitFor(/unable to authenticate|authentication failed/i, 30_000);
    assert.equal((await second.api('/api/v1/clients/stock-wrong')).status, 404);
  },
);

test(
  'a mixed fleet: a stock RPort client and an rport client in one rportd, each with a working tunnel',
  { skip },
  async (t) => {
    const server = await startServer(t, ['--key-seed', SEED]);
    const fp = /([0-9a-f]{2}(?::[0-9a-f]{2}){15}) in the MD5 form/.exec(server.proc.output)![1]!;
    stockClient(t, server, { id: 'fleet-stock', fingerprint: fp });
    const ours = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'fleet-rport', '--fingerprint', fp]);
    await ours.waitFor(/INFO {2}client: connected to/, 30_000);
    await listed(server, 'fleet-stock');
    await listed(server, 'fleet-rport');
    const echo = await target(t, (s) => s.pipe(s));
    for (const id of ['fleet-stock', 'fleet-rport']) {
      const r = await exchange(await tunnel(server, id, echo), Buffer.from(`via ${id}`), `via ${id}`.length);
      assert.deepEqual([r.how, r.got.toString()], ['complete', `via ${id}`]);
    }
    // RPort's refresh route is for RPort's client: rport's reports no OS updates.
    const refresh = await server.api('/api/v1/clients/fleet-rport/updates-status', API_AUTH, 'POST');
    assert.equal(refresh.status, 409, JSON.stringify(refresh.body));
    assert.match(JSON.stringify(refresh.body), /reports no pending OS updates/);
  },
);

test("a stock RPort client's [client] remotes become tunnels on rportd, on the port it names", { skip }, async (t) => {
  const fixed = await freePort();
  const server = await startServer(t, ['--key-seed', SEED, '--used-ports', `20000-30000,${fixed}`]);
  const fp = /([0-9a-f]{2}(?::[0-9a-f]{2}){15}) in the MD5 form/.exec(server.proc.output)![1]!;
  const echo = await target(t, (s) => s.pipe(s));
  stockClient(t, server, { id: 'stock-remotes', fingerprint: fp, remotes: [`127.0.0.1:${fixed}:127.0.0.1:${echo}`] });
  await listed(server, 'stock-remotes');
  await eventually(
    async () =>
      (await server.api('/api/v1/clients/stock-remotes/tunnels')).body.data.some((x: any) => x.listening)
        ? true
        : undefined,
    20_000,
    'the client-defined tunnel listening',
  );
  const r = await exchange(fixed, Buffer.from('through remotes'), 'through remotes'.length);
  assert.deepEqual([r.how, r.got.toString()], ['complete', 'through remotes']);
});

test("a stock RPort client's updates_status is kept and shown in the API as RPort shows it", { skip }, async (t) => {
  const server = await startServer(t, ['--key-seed', SEED]);
  const fp = /([0-9a-f]{2}(?::[0-9a-f]{2}){15}) in the MD5 form/.exec(server.proc.output)![1]!;
  // A PATH without apt, yum or zypper: the real client's check reports that, and touches no package manager.
  stockClient(t, server, { id: 'stock-updates', fingerprint: fp, updatesInterval: '2s', path: tmpDir(t, 'no-pkg-') });
  await listed(server, 'stock-updates');
  const status = await eventually(
    async () => (await server.api('/api/v1/clients/stock-updates')).body.data.updates_status ?? undefined,
    30_000,
    'updates_status in the API',
  );
  assert.equal(status.error, 'no supported package manager found', JSON.stringify(status));
  assert.equal(status.updates_available, 0);
  assert.equal(status.reboot_pending, false);
  assert.ok(Date.parse(status.refreshed) > Date.now() - 60_000, status.refreshed);
  const listing = await server.api('/api/v1/clients?fields[clients]=id,updates_status');
  assert.equal(listing.status, 200, JSON.stringify(listing.body));
  assert.deepEqual(
    listing.body.data.find((c: any) => c.id === 'stock-updates').updates_status.error,
    'no supported package manager found',
  );
  assert.doesNotMatch(server.proc.output, /refused updates_status/);
});

test(
  "a stock RPort client decides a tunnel's target: its tunnel_allowed (check_tunnel_allowed) and, with check_port=1, whether the target answers",
  { skip },
  async (t) => {
    const server = await startServer(t, ['--key-seed', SEED]);
    const fp = /([0-9a-f]{2}(?::[0-9a-f]{2}){15}) in the MD5 form/.exec(server.proc.output)![1]!;
    stockClient(t, server, { id: 'stock-checks', fingerprint: fp });
    await listed(server, 'stock-checks');
    const ask = (remote: string, checkPort: boolean) =>
      server.api(
        `/api/v1/clients/stock-checks/tunnels?remote=${remote}&local=127.0.0.1:0${checkPort ? '&check_port=1' : ''}`,
        API_AUTH,
        'PUT',
      );
    const echo = await target(t, (s) => s.pipe(s));
    const outside = await ask(`127.0.0.2:${echo}`, false);
    assert.notEqual(outside.status, 200, JSON.stringify(outside.body));
    assert.match(JSON.stringify(outside.body), /not allowed by the client's tunnel_allowed/);
    const closed = await ask(`127.0.0.1:${await freePort()}`, true);
    assert.equal(closed.status, 400, JSON.stringify(closed.body));
    assert.match(JSON.stringify(closed.body), /ERR_CODE_REMOTE_PORT_NOT_OPEN/);
    const open = await ask(`127.0.0.1:${echo}`, true);
    assert.equal(open.status, 200, JSON.stringify(open.body));
    const port = Number(open.body.data.local.split(':').pop());
    const r = await exchange(port, Buffer.from('checked'), 'checked'.length);
    assert.deepEqual([r.how, r.got.toString()], ['complete', 'checked']);
    assert.equal((await server.api('/api/v1/clients/stock-checks/tunnels')).body.data.length, 1);
  },
);

test(
  "pings both ways with a stock RPort client: it stays connected on its own keep-alive pings, and a second process with its id is refused because the first answered rportd's ping",
  { skip },
  async (t) => {
    const server = await startServer(t, ['--key-seed', SEED]);
    const fp = /([0-9a-f]{2}(?::[0-9a-f]{2}){15}) in the MD5 form/.exec(server.proc.output)![1]!;
    const first = stockClient(t, server, { id: 'stock-twin', fingerprint: fp });
    await listed(server, 'stock-twin');
    // Past its keep_alive_timeout (5 s) several times over: its pings (every 2 s) were answered.
    await new Promise((r) => setTimeout(r, 12_000));
    assert.doesNotMatch(first.output, /Retrying in/, 'the first client lost its connection');
    const twin = stockClient(t, server, { id: 'stock-twin', fingerprint: fp });
    await server.proc.waitFor(
      /refused a connection request from 127\.0\.0\.1 as client1: client id "stock-twin" is already connected from 127\.0\.0\.1 and answered a ping within/,
      30_000,
    );
    await twin.waitFor(/client is already connected/, 30_000);
    assert.equal((await listed(server, 'stock-twin')).connection_state, 'connected');
  },
);

test(
  "POST /clients/{id}/updates-status has a stock RPort client check its pending OS updates now, as RPort's route does",
  { skip },
  async (t) => {
    const server = await startServer(t, ['--key-seed', SEED]);
    const fp = /([0-9a-f]{2}(?::[0-9a-f]{2}){15}) in the MD5 form/.exec(server.proc.output)![1]!;
    // Its first check runs before it is connected (and is not sent); the next one would be in an hour.
    const path = tmpDir(t, 'no-pkg-');
    stockClient(t, server, { id: 'stock-refresh', fingerprint: fp, updatesInterval: '1h', path });
    assert.equal((await listed(server, 'stock-refresh')).updates_status, null);
    const r = await server.api('/api/v1/clients/stock-refresh/updates-status', API_AUTH, 'POST');
    assert.equal(r.status, 204, JSON.stringify(r.body));
    const status = await eventually(
      async () => (await server.api('/api/v1/clients/stock-refresh')).body.data.updates_status ?? undefined,
      30_000,
      'updates_status after the refresh',
    );
    assert.equal(status.error, 'no supported package manager found', JSON.stringify(status));
    assert.equal((await server.api('/api/v1/clients/nobody/updates-status', API_AUTH, 'POST')).status, 404);
  },
);
