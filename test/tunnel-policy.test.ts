import assert from 'node:assert/strict';
import { connect, createServer, isIP, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { startClientInProcess, startServerInProcess } from './helpers/in-process.js';
import {
  cleanup,
  freePort,
  patient,
  run,
  startClient,
  tmpDir,
  writeFile,
  API_AUTH,
  type AnyServer,
} from '../harness/procs.js';

const connected = /INFO {2}client: connected to (\S+) within/;

async function listen(t: TestContext, onConn: (s: Socket) => void, host = '127.0.0.1', port = 0): Promise<number> {
  const srv = createServer(onConn);
  await new Promise<void>((r) => srv.listen(port, host, r));
  cleanup(t, () => new Promise((r) => srv.close(r)));
  return (srv.address() as AddressInfo).port;
}

const echo = (t: TestContext) => listen(t, (s) => s.pipe(s));

function put(server: AnyServer, client: string, query: string): Promise<{ status: number; body: any }> {
  return server.api(`/api/v1/clients/${client}/tunnels?${query}`, API_AUTH, 'PUT');
}

/** In this process, unless the test needs the client's own environment (a preload): then as a process. */
async function connectedClient(
  t: TestContext,
  server: AnyServer,
  id: string,
  extra: string[] = [],
  env?: NodeJS.ProcessEnv,
) {
  const to = `127.0.0.1:${server.port}`;
  const client = env
    ? startClient(t, to, ['--id', id, ...extra], env)
    : startClientInProcess(t, to, ['--id', id, ...extra]);
  await client.waitFor(connected);
  return client;
}

/** Whether something listens on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

test('explicit ports: only from used_ports and never from excluded_ports, refused with 400 naming both', async (t) => {
  const target = await echo(t);
  const fixed = await freePort();
  const server = await startServerInProcess(t, ['--used-ports', `1000-1100,${fixed}`]);
  await connectedClient(t, server, 'ports');
  for (const port of [80, 1000, 42500 === fixed ? 42501 : 42500]) {
    const r = await put(server, 'ports', `remote=127.0.0.1:${target}&local=127.0.0.1:${port}`);
    assert.equal(r.status, 400, `port ${port}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.errors[0].code, 'port_not_allowed');
    assert.match(
      r.body.errors[0].title,
      new RegExp(`port ${port} .*\\[server\\] used_ports \\(1000-1100,${fixed}\\).*excluded_ports \\(1-1024\\)`),
    );
  }
  assert.equal((await put(server, 'ports', `remote=127.0.0.1:${target}&local=127.0.0.1:${fixed}`)).status, 200);
  assert.ok(await listening(fixed));
});

test("a tunnel that names no address stays on loopback in a new install, and the answer and log line say so; RPort's 0.0.0.0 behind tunnel_bind_addresses, with a warning", async (t) => {
  const target = await echo(t);
  let server = await startServerInProcess(t);
  await connectedClient(t, server, 'no-local');
  let r = await put(server, 'no-local', `remote=127.0.0.1:${target}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.match(r.body.data.local, /^127\.0\.0\.1:\d+$/);
  const loopback =
    /listens on 127\.0\.0\.1:\d+, on this machine only: the request named no address and \[server\] tunnel_bind_addresses starts with 127\.0\.0\.1; ask for local=0\.0\.0\.0:PORT \(with an acl\) to reach it from other hosts/;
  assert.match(r.body.data.note, loopback);
  await server.proc.waitFor(
    new RegExp(
      `INFO  tunnels: tunnel ${r.body.data.id}: 127\\.0\\.0\\.1:\\d+ -> client no-local -> 127\\.0\\.0\\.1:${target}: ${loopback.source}`,
    ),
  );
  // Named addresses get no note.
  r = await put(server, 'no-local', `remote=127.0.0.1:${target}&local=127.0.0.1:0`);
  assert.equal(r.body.data.note, undefined);

  // A migrated config that wants RPort's meaning puts 0.0.0.0 first: published, and said so loudly.
  server = await startServerInProcess(t, ['--tunnel-bind-addresses', '0.0.0.0,127.0.0.1']);
  await connectedClient(t, server, 'rport-style');
  r = await put(server, 'rport-style', `remote=127.0.0.1:${target}`);
  assert.match(r.body.data.local, /^0\.0\.0\.0:\d+$/);
  assert.match(
    r.body.data.note,
    /for every network this server is on, with no acl: .* \(RPort's default\); add an acl/,
  );
  await server.proc.waitFor(
    new RegExp(
      `WARN  tunnels: tunnel ${r.body.data.id}: 0\\.0\\.0\\.0:\\d+ -> .* for every network this server is on, with no acl`,
    ),
  );
});

test('status and tunnels show addresses one can reach: the API where it listens, never 0.0.0.0', async (t) => {
  const target = await echo(t);
  // The client port on every address (the default), the API on loopback; traffic stays on 127.0.0.1.
  const port = await freePort();
  const server = await startServerInProcess(t, ['--address', `0.0.0.0:${port}`], {
    port,
    apiPort: await freePort(),
    dataDir: tmpDir(t, 'rportd-'),
  });
  await connectedClient(t, server, 'where');
  const self = (await server.api('/api/v1/status')).body.data.cluster_nodes[0];
  assert.equal(self.api_url, `http://127.0.0.1:${server.apiPort}`);
  assert.doesNotMatch(self.client_address, /^0\.0\.0\.0:/);
  const r = await put(server, 'where', `remote=127.0.0.1:${target}&local=127.0.0.1:0`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.notEqual(r.body.data.node_address, '0.0.0.0');
  assert.equal(r.body.data.node_address, self.public_address);
  assert.ok(isIP(r.body.data.node_address), r.body.data.node_address);
});

test('bind addresses: only those [server] tunnel_bind_addresses permits; a tunnel without one gets the first', async (t) => {
  const target = await echo(t);
  let server = await startServerInProcess(t);
  await connectedClient(t, server, 'bind-default');
  let r = await put(server, 'bind-default', `remote=127.0.0.1:${target}&local=192.0.2.1:0`);
  assert.deepEqual([r.status, r.body.errors?.[0]?.code], [400, 'bind_address_not_allowed'], JSON.stringify(r.body));
  assert.match(r.body.errors[0].title, /192\.0\.2\.1 .*\[server\] tunnel_bind_addresses/);

  server = await startServerInProcess(t, ['--tunnel-bind-addresses', '127.0.0.1']);
  await connectedClient(t, server, 'bind-loopback');
  for (const local of ['0.0.0.0:0', '127.0.0.2:0', 'localhost:0']) {
    r = await put(server, 'bind-loopback', `remote=127.0.0.1:${target}&local=${local}`);
    assert.deepEqual(
      [r.status, r.body.errors?.[0]?.code],
      [400, 'bind_address_not_allowed'],
      `${local}: ${JSON.stringify(r.body)}`,
    );
  }
  r = await put(server, 'bind-loopback', `remote=127.0.0.1:${target}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.match(r.body.data.local, /^127\.0\.0\.1:\d+$/);
});

test('max_tunnels_per_client: parallel requests beyond the cap get 400, and a deleted tunnel makes room', async (t) => {
  const target = await echo(t);
  const server = await startServerInProcess(t, ['--max-tunnels-per-client', '3']);
  await connectedClient(t, server, 'greedy');
  const all = await Promise.all(
    Array.from({ length: 10 }, () => put(server, 'greedy', `remote=127.0.0.1:${target}&local=127.0.0.1:0`)),
  );
  const ok = all.filter((r) => r.status === 200);
  assert.equal(ok.length, 3, JSON.stringify(all.map((r) => r.status)));
  for (const r of all.filter((x) => x.status !== 200)) {
    assert.deepEqual([r.status, r.body.errors[0].code], [400, 'too_many_tunnels']);
    assert.match(
      r.body.errors[0].title,
      /client greedy has 3 tunnels, the most \[server\] max_tunnels_per_client allows/,
    );
  }
  assert.equal((await server.api('/api/v1/clients/greedy/tunnels')).body.data.length, 3);
  assert.equal(
    (await server.api(`/api/v1/clients/greedy/tunnels/${ok[0]!.body.data.id}`, API_AUTH, 'DELETE')).status,
    204,
  );
  assert.equal((await put(server, 'greedy', `remote=127.0.0.1:${target}`)).status, 200);
});

test('the same rules for [client] remotes (a warning each) and for stored tunnels after a restart', async (t) => {
  const target = await echo(t);
  const [good, stored] = [await freePort(), await freePort()];
  let server = await startServerInProcess(t, ['--used-ports', `20000-30000,${good},${stored}`]);
  const remotes = [
    `127.0.0.1:80:127.0.0.1:${target}`,
    `127.0.0.2:${good}:127.0.0.1:${target}`,
    `127.0.0.1:${good}:127.0.0.1:${target}`,
  ];
  await connectedClient(t, server, 'remotes', ['--remotes', remotes.join(',')]);
  await server.proc.waitFor(
    /client remotes: \[client\] remotes entry "127\.0\.0\.1:80:[^"]+" refused: port 80 is not in \[server\] used_ports/,
  );
  await server.proc.waitFor(
    /client remotes: \[client\] remotes entry "127\.0\.0\.2:\d+:[^"]+" refused: bind address 127\.0\.0\.2 is not in \[server\] tunnel_bind_addresses/,
  );
  const r = await put(server, 'remotes', `remote=127.0.0.1:${target}&local=127.0.0.1:${stored}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const list = (await server.api('/api/v1/clients/remotes/tunnels')).body.data.map((x: any) => x.local).sort();
  assert.deepEqual(list, [`127.0.0.1:${good}`, `127.0.0.1:${stored}`].sort());

  await server.proc.stop();
  server = await startServerInProcess(t, ['--used-ports', `20000-30000,${good}`], {
    port: server.port,
    apiPort: server.apiPort,
    dataDir: server.dataDir,
  });
  await server.proc.waitFor(
    new RegExp(
      `stored tunnel ${r.body.data.id} of client remotes \\(127\\.0\\.0\\.1:${stored} -> [^)]+\\) not restored: port ${stored} is not in \\[server\\] used_ports`,
    ),
  );
  await server.proc.waitFor(/client remotes .* connected/);
  const after = (await server.api('/api/v1/clients/remotes/tunnels')).body.data.map((x: any) => x.local);
  assert.deepEqual(after, [`127.0.0.1:${good}`]);
  assert.equal(await listening(stored), false);
});

test('acl given without any entry is a 400, never a tunnel open to all', async (t) => {
  const target = await echo(t);
  const server = await startServerInProcess(t);
  await connectedClient(t, server, 'acl-empty');
  for (const acl of [',,,', '%20,%20', '']) {
    const r = await put(server, 'acl-empty', `remote=127.0.0.1:${target}&acl=${acl}`);
    assert.deepEqual(
      [r.status, r.body.errors?.[0]?.code],
      [400, 'bad_request'],
      `acl="${acl}": ${JSON.stringify(r.body)}`,
    );
    assert.match(r.body.errors[0].title, /querystring field "acl" .*no address/);
  }
  assert.deepEqual((await server.api('/api/v1/clients/acl-empty/tunnels')).body.data, []);
});

test('idle_timeout beyond the 24.8-day timer limit: the tunnel stays', async (t) => {
  const target = await echo(t);
  const server = await startServerInProcess(t);
  await connectedClient(t, server, 'long-idle');
  const long = await put(server, 'long-idle', `remote=127.0.0.1:${target}&idle_timeout=1000h`);
  assert.equal(long.status, 200, JSON.stringify(long.body));
  assert.equal(long.body.data.idle_timeout_sec, 3_600_000);
  // A 1s tunnel made after it is deleted first: by then an overflowing timer would have fired too.
  const short = await put(server, 'long-idle', `remote=127.0.0.1:${target}&idle_timeout=1s`);
  await server.proc.waitFor(new RegExp(`tunnel ${short.body.data.id} idle for 1s: deleting it`), 5000);
  const list = (await server.api('/api/v1/clients/long-idle/tunnels')).body.data;
  assert.deepEqual(
    list.map((x: any) => [x.id, x.listening]),
    [[long.body.data.id, true]],
  );
});

test('a PUT that fails after the listener opened closes the listener', async (t) => {
  const target = await echo(t);
  const port = await freePort();
  const server = await startServerInProcess(t, ['--used-ports', `20000-30000,${port}`]);
  await connectedClient(t, server, 'store-fails', ['--keep-alive', '0s']);
  // Another writer holds the registry: the tunnel's write fails once the server's busy timeout runs out.
  const db = new Database(join(server.dataDir, 'rportd.db'));
  db.exec('BEGIN EXCLUSIVE');
  let r;
  try {
    r = await put(server, 'store-fails', `remote=127.0.0.1:${target}&local=127.0.0.1:${port}`);
  } finally {
    db.exec('ROLLBACK');
    db.close();
  }
  // The port's claim is the first write, before listening: refused as the database's fault.
  assert.equal(r.status, 503, JSON.stringify(r.body));
  assert.equal(r.body.errors[0].code, 'database_unavailable');
  assert.equal(await listening(port), false, 'the port of the failed tunnel is still listening');
  assert.deepEqual((await server.api('/api/v1/clients/store-fails/tunnels')).body.data, []);
});

test('DNS rebinding: tunnel_allowed is checked on the address that is dialed, at every dial', async (t) => {
  const allowed = await echo(t);
  let forbiddenHits = 0;
  const forbidden: Server = createServer((s) => {
    forbiddenHits++;
    s.end('forbidden');
  });
  await new Promise<void>((r) => forbidden!.listen(allowed, '127.0.0.2', r));
  cleanup(t, () => new Promise((r) => forbidden!.close(r)));
  // A name whose first answer is allowed and whose later answers point elsewhere, as a rebinding DNS server gives.
  const preload = writeFile(
    tmpDir(t),
    'rebind.mjs',
    `
import dns from 'node:dns';
import { syncBuiltinESMExports } from 'node:module';
let asked = 0;
const answer = (host) => (host === 'rebind.test' ? (asked++ === 0 ? '127.0.0.1' : '127.0.0.2') : undefined);
const lookup = dns.lookup;
dns.lookup = function (host, options, cb) {
  if (typeof options === 'function') [cb, options] = [options, {}];
  const a = answer(host);
  if (!a) return lookup.call(this, host, options, cb);
  process.nextTick(() => (options?.all ? cb(null, [{ address: a, family: 4 }]) : cb(null, a, 4)));
};
const plookup = dns.promises.lookup;
dns.promises.lookup = async (host, options) => {
  const a = answer(host);
  if (!a) return plookup(host, options);
  return options?.all ? [{ address: a, family: 4 }] : { address: a, family: 4 };
};
syncBuiltinESMExports();
`,
  );
  const server = await startServerInProcess(t);
  const client = await connectedClient(t, server, 'rebind', ['--tunnel-allowed', '127.0.0.1'], {
    NODE_OPTIONS: `--import=${pathToFileURL(preload).href}`,
  });
  const r = await put(server, 'rebind', `remote=rebind.test:${allowed}&local=127.0.0.1:0`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const outcome = await new Promise<string>((resolve) => {
    const s = connect(Number(r.body.data.local.split(':').pop()), '127.0.0.1');
    s.on('data', () => undefined);
    s.once('end', () => resolve('end'));
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
  assert.equal(forbiddenHits, 0, 'the client dialed an address tunnel_allowed does not allow');
  assert.equal(outcome, 'ECONNRESET');
  await client.waitFor(/rebind\.test.*127\.0\.0\.2.*not allowed by \[client\] tunnel_allowed/);
});

test(
  'tunnel policy keys: a bad value is one line naming the key and the fix',
  { timeout: patient(30_000) },
  async (t) => {
    const dir = tmpDir(t);
    const conf = (text: string) =>
      writeFile(dir, 'rportd.conf', `[server]\nauth = "a:b"\ndata_dir = "${dir}"\n${text}`);
    const cases: Array<[string, string]> = [
      [
        'tunnel_bind_addresses = ["localhost"]',
        '[server] tunnel_bind_addresses = ["localhost"] has "localhost", which is not an IP address (use e.g. ["0.0.0.0", "127.0.0.1"])',
      ],
      [
        'tunnel_bind_addresses = []',
        '[server] tunnel_bind_addresses = [] is empty: no tunnel could listen (use e.g. ["0.0.0.0"])',
      ],
      ['max_tunnels_per_client = 0', '[server] max_tunnels_per_client = 0 must be at least 1 (use e.g. 64)'],
    ];
    for (const [line, message] of cases) {
      const p = run('rportd', ['-c', conf(line)]);
      assert.equal((await p.exited).code, 2, p.output);
      assert.deepEqual(p.lines, [`${dir}/rportd.conf: ${message}`]);
    }
  },
);
