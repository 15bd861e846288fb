// A migrating RPort user's setup, run for real: their client ids, proxies, headers and rportd semantics,
// and the errors a new user meets, each one line that names the key and the fix.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingHttpHeaders } from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import { hostname, userInfo } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { connectionRequest } from '../src/client/client.js';
import { dial } from '../src/client/dial.js';
import { StepClock } from '../src/watchdog/step-clock.js';
import { machineId } from '../src/config/client-config.js';
import { parseServerUrl } from '../src/config/server-url.js';
import { RemoteError } from '../src/transport/control-channel.js';
import { METHOD } from '../src/transport/protocol.js';
import {
  CLI_DIR,
  CLIENT_AUTH,
  cleanup,
  eventually,
  freePort,
  run,
  runProgram,
  runtimeRunsAs,
  startClient,
  startServer,
  tmpDir,
  writeFile,
  type ServerHandle,
} from '../harness/procs.js';

const connected = /INFO {2}client: connected to (\S+) within/;

async function clientIds(server: ServerHandle): Promise<Array<{ id: string; name: string; connected: boolean }>> {
  return (await server.api('/api/v1/clients')).body.data;
}

test("client ids as RPort derives them: the machine id as it is; use_system_id = false: the server assigns one (the credential's under equate_clientauthid_clientid)", async (t) => {
  const server = await startServer(t);
  const fleet = startClient(t, `127.0.0.1:${server.port}`);
  await fleet.waitFor(connected);
  const noId = startClient(t, `127.0.0.1:${server.port}`, ['--use-system-id=false', '--use-hostname=false']);
  await noId.waitFor(connected);
  const clients = await clientIds(server);
  assert.deepEqual(
    clients.filter((c) => c.id === readFileSync('/etc/machine-id', 'utf8').trim()).map((c) => c.name),
    [hostname()],
  );
  assert.equal(clients.length, 2);
  assert.match(clients.find((c) => c.id !== machineId())!.id, /^[0-9a-f]{8}-[0-9a-f]{4}-/);
  assert.equal(clients.find((c) => c.id !== machineId())!.name, '');

  const equating = await startServer(t, ['--auth-multiuse-creds=false', '--equate-clientauthid-clientid']);
  const byAuth = startClient(t, `127.0.0.1:${equating.port}`, ['--use-system-id=false']);
  await byAuth.waitFor(connected);
  assert.deepEqual(
    (await clientIds(equating)).map((c) => c.id),
    [CLIENT_AUTH.split(':')[0]],
  );
});

test('a cloned machine (its machine id on another host) is refused with a message that says so; the original keeps its session', async (t) => {
  const server = await startServer(t);
  const original = startClient(t, `127.0.0.1:${server.port}`);
  await original.waitFor(connected);
  // The clone, written here: the same machine id, another host name, as a copied VM image sends it.
  const [authId, password] = CLIENT_AUTH.split(':') as [string, string];
  const link = await dial(
    {
      server: parseServerUrl(`127.0.0.1:${server.port}`)!,
      proxy: undefined,
      extraCa: undefined,
      headers: {},
      authId,
      password,
      fingerprint: server.fingerprint,
      timeoutMs: 5000,
    },
    new StepClock(),
    () => {},
  );
  cleanup(t, () => link.close());
  const request = connectionRequest(
    { id: machineId(), name: 'clone', tags: [], hostname: 'clone-of-vm', remotes: [] },
    undefined,
  );
  const refused = await link.control.request(METHOD.connect, request, 5000).then(
    () => undefined,
    (e: Error) => e,
  );
  assert.ok(refused instanceof RemoteError, `refused: ${refused}`);
  const expected = new RegExp(
    `client id "${machineId()}" is already connected from host "${hostname()}" \\(127\\.0\\.0\\.1\\) and is used by host "clone-of-vm" \\(127\\.0\\.0\\.1\\) too: a cloned machine with a duplicate machine id\\? Give the clone a new machine id`,
  );
  assert.match(refused.message, expected);
  await server.proc.waitFor(expected);
  const mark = original.mark();
  assert.deepEqual(
    (await clientIds(server)).map((c) => [c.name, c.connected]),
    [[hostname(), true]],
  );
  assert.equal(
    original.lines.slice(mark).some((l) => /lost|closed/.test(l)),
    false,
  );
});

/** A SOCKS5 proxy with user and password, written here: records where it was asked to go. */
async function socks5Proxy(t: TestContext, user: string, pass: string): Promise<{ port: number; targets: string[] }> {
  const targets: string[] = [];
  const srv = createServer((c) => {
    let buf = Buffer.alloc(0);
    let stage = 0;
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (stage === 0 && buf.length >= 2 && buf.length >= 2 + buf[1]!) {
        const methods = [...buf.subarray(2, 2 + buf[1]!)];
        buf = buf.subarray(2 + buf[1]!);
        if (!methods.includes(2)) return c.end(Buffer.from([5, 0xff]));
        c.write(Buffer.from([5, 2]));
        stage = 1;
      }
      if (
        stage === 1 &&
        buf.length >= 2 &&
        buf.length >= 3 + buf[1]! &&
        buf.length >= 3 + buf[1]! + buf[2 + buf[1]!]!
      ) {
        const ul = buf[1]!;
        const pl = buf[2 + ul]!;
        const ok = buf.subarray(2, 2 + ul).toString() === user && buf.subarray(3 + ul, 3 + ul + pl).toString() === pass;
        buf = buf.subarray(3 + ul + pl);
        if (!ok) return c.end(Buffer.from([1, 1]));
        c.write(Buffer.from([1, 0]));
        stage = 2;
      }
      if (stage === 2 && buf.length >= 5) {
        const atyp = buf[3]!;
        const len = atyp === 1 ? 4 : atyp === 4 ? 16 : 1 + buf[4]!;
        if (buf.length < 4 + len + 2) return;
        const host =
          atyp === 1 ? [...buf.subarray(4, 8)].join('.') : atyp === 3 ? buf.subarray(5, 5 + buf[4]!).toString() : 'v6';
        const port = buf.readUInt16BE(4 + len);
        targets.push(`${host}:${port}`);
        c.off('data', onData);
        stage = 3;
        const up = connect(port, host === 'localhost' ? '127.0.0.1' : host, () => {
          c.write(Buffer.from([5, 0, 0, 1, 127, 0, 0, 1, 0, 0]));
          const rest = buf.subarray(4 + len + 2);
          if (rest.length) up.write(rest);
          c.pipe(up).pipe(c);
        });
        up.on('error', () => c.destroy());
        c.on('error', () => up.destroy());
      }
    };
    c.on('data', onData);
    c.on('error', () => {});
  });
  const sockets = new Set<Socket>();
  srv.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  cleanup(
    t,
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        srv.close(() => r());
      }),
  );
  return { port: (srv.address() as { port: number }).port, targets };
}

test('[client] proxy = "socks5://user:pass@host:port" (RPort documents it): the client connects through it; a wrong password is named', async (t) => {
  const server = await startServer(t);
  const proxy = await socks5Proxy(t, 'proxyuser', 'pr0xy');
  const client = startClient(t, `localhost:${server.port}`, [
    '--id',
    'via-socks',
    '--proxy',
    `socks5://proxyuser:pr0xy@127.0.0.1:${proxy.port}`,
  ]);
  await client.waitFor(connected);
  // The server's name went to the proxy, for it to resolve.
  assert.deepEqual(proxy.targets, [`localhost:${server.port}`]);
  const wrong = startClient(t, `127.0.0.1:${server.port}`, [
    '--id',
    'bad-socks',
    '--max-retry-count',
    '0',
    '--proxy',
    `socks5://proxyuser:wrong@127.0.0.1:${proxy.port}`,
  ]);
  assert.equal((await wrong.exited).code, 1);
  assert.match(
    wrong.output,
    /the last one: SOCKS5 proxy 127\.0\.0\.1:\d+ refused the user and password of \[client\] proxy$/m,
  );
});

test("RPort's list-form headers and [connection] hostname reach the upgrade; a client pointed at a port that is not rportd's is told so", async (t) => {
  const seen: IncomingHttpHeaders[] = [];
  const web = createHttpServer((req, res) => {
    seen.push(req.headers);
    res.writeHead(200).end('a dashboard');
  });
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
  cleanup(
    t,
    () =>
      new Promise<void>((r) => {
        web.closeAllConnections();
        web.close(() => r());
      }),
  );
  const port = (web.address() as { port: number }).port;
  const dir = tmpDir(t);
  const conf = writeFile(
    dir,
    'rport.conf',
    `[client]
  server = "127.0.0.1:${port}"
  auth = "${CLIENT_AUTH}"
  data_dir = "${dir}"
[connection]
  max_retry_count = 0
  hostname = "myvm1.lan"
  headers = ['User-Agent: test1', 'Authorization: Basic XXXXXX']
`,
  );
  const client = run('rport', ['-c', conf]);
  cleanup(t, () => client.stop());
  assert.equal((await client.exited).code, 1);
  assert.match(
    client.output,
    new RegExp(
      `server answered the WebSocket upgrade with HTTP 200 \\(OK\\): 127\\.0\\.0\\.1:${port} is not rportd's client port \\(the API, a web server or a proxy answered\\): set \\[client\\] server to rportd's \\[server\\] address$`,
      'm',
    ),
  );
  assert.deepEqual(
    [seen[0]!['user-agent'], seen[0]!.authorization, seen[0]!.host],
    ['test1', 'Basic XXXXXX', 'myvm1.lan'],
  );
});

test('a refused connection names the address and what to check', async (t) => {
  const closed = await freePort();
  const client = startClient(t, `127.0.0.1:${closed}`, ['--max-retry-count', '0']);
  assert.equal((await client.exited).code, 1);
  assert.match(
    client.output,
    new RegExp(
      `the last one: 127\\.0\\.0\\.1:${closed} refused the connection \\(ECONNREFUSED\\): is rportd running and listening there\\? check \\[client\\] server against rportd's \\[server\\] address$`,
      'm',
    ),
  );
});

test('rportd as RPort: no API unless [api] address is set; disconnected clients kept unless purge_disconnected_clients = true', async (t) => {
  const port = await freePort();
  const dir = tmpDir(t);
  const bare = run('rportd', ['--address', `127.0.0.1:${port}`, '--auth', CLIENT_AUTH, '--data-dir', dir]);
  cleanup(t, () => bare.stop());
  await bare.waitFor(/listening for clients/);
  assert.equal(
    bare.lines.some((l) => /API listening/.test(l)),
    false,
    bare.output,
  );
  await bare.stop();

  const server = await startServer(t, [
    '--keep-disconnected-clients',
    '1s',
    '--purge-disconnected-clients-interval',
    '1s',
  ]);
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'kept']);
  await client.waitFor(connected);
  await client.stop();
  await eventually(
    async () => ((await clientIds(server)).some((c) => c.id === 'kept' && !c.connected) ? true : undefined),
    10_000,
    'client disconnected',
  );
  // Several purge intervals past keep_disconnected_clients: still there, as RPort keeps it.
  await new Promise((r) => setTimeout(r, 3000));
  assert.deepEqual(
    (await clientIds(server)).map((c) => c.id),
    ['kept'],
  );
  assert.equal(
    server.proc.lines.some((l) => /removed from the registry/.test(l)),
    false,
  );
});

test(
  'rportd on a read-only data_dir (systemd ProtectSystem=strict): one line that names the unit settings that fix it',
  {
    skip:
      (process.getuid?.() !== 0 || !existsSync('/usr/bin/unshare')) &&
      'needs root and unshare for a private read-only mount',
  },
  async (t) => {
    const dir = tmpDir(t);
    const data = `${dir}/data`;
    mkdirSync(data);
    const port = await freePort();
    // A private mount namespace: the folder is read-only for rportd only, the host is not touched.
    const p = runProgram(t, '/usr/bin/unshare', [
      '-m',
      '--propagation',
      'private',
      'sh',
      '-c',
      `mount --bind ${data} ${data} && mount -o remount,bind,ro ${data} && exec "$0" "$@"`,
      process.execPath,
      join(CLI_DIR, 'rportd.js'),
      '--address',
      `127.0.0.1:${port}`,
      '--auth',
      CLIENT_AUTH,
      '--data-dir',
      data,
    ]);
    assert.equal((await p.exited).code, 1, p.output);
    assert.equal(p.lines.length, 1, p.output);
    const [head, tail] = [
      `rportd: --data-dir "${data}": cannot write in ${data} (${data}/`,
      `): the file system is read-only there (under systemd, ProtectSystem=strict leaves only the unit's StateDirectory= and ReadWritePaths= writable): set [server] data_dir to the unit's StateDirectory, or add ReadWritePaths=${data} to the unit`,
    ];
    assert.ok(p.lines[0]!.startsWith(head) && p.lines[0]!.endsWith(tail), p.output);
  },
);

test('rportd with a data_dir it cannot write: one line naming the key, the folder and the fix, on stderr and in log_file', async (t) => {
  const dir = tmpDir(t);
  const file = writeFile(dir, 'a-file', '');
  const port = await freePort();
  const log = `${dir}/rportd.log`;
  // The user by name, as the fix must be pasted: $(id -un) would be whoever pastes it (root).
  const me = userInfo().username;
  const p = run('rportd', [
    '--address',
    `127.0.0.1:${port}`,
    '--auth',
    CLIENT_AUTH,
    '--data-dir',
    `${file}/data`,
    '--log-file',
    log,
  ]);
  assert.equal((await p.exited).code, 1);
  const line = `--data-dir "${file}/data": cannot create files in ${file}/data: a part of the path is a file, not a folder: create the folder, writable by ${me}, the user rportd runs as (mkdir -p ${file}/data && chown ${me} ${file}/data), or set another [server] data_dir`;
  assert.deepEqual(p.lines, [`rportd: ${line}`]);
  assert.match(
    readFileSync(log, 'utf8'),
    new RegExp(`ERROR rportd: ${line.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\n$`),
  );

  if (!runtimeRunsAs(65534))
    return t.diagnostic(`not run as nobody: not root, or ${process.execPath} is not executable by nobody`);
  // As an unprivileged service user, under a folder only root may write.
  const locked = `${dir}/locked`;
  mkdirSync(locked, { mode: 0o700 });
  const q = run('rportd', ['--address', `127.0.0.1:${port}`, '--auth', CLIENT_AUTH], {}, { uid: 65534 });
  const r = run(
    'rportd',
    ['--address', `127.0.0.1:${port}`, '--auth', CLIENT_AUTH, '--data-dir', `${locked}/data`],
    {},
    { uid: 65534 },
  );
  assert.equal((await r.exited).code, 1);
  assert.match(
    r.output,
    new RegExp(
      `^rportd: --data-dir "${locked}/data": cannot use ${locked}/data: permission denied to nobody, the user rportd runs as: give the folder and its files to nobody \\(chown -R nobody ${locked}/data; a run as root leaves root's files behind\\), or set another \\[server\\] data_dir$`,
    ),
  );
  assert.doesNotMatch(r.output, /id -un/);
  // The default data_dir is named as such.
  assert.equal((await q.exited).code, 1);
  assert.match(
    q.output,
    /^rportd: \[server\] data_dir = "\/var\/lib\/rport" \(the default\): cannot use \/var\/lib\/rport: permission denied to nobody/,
  );
});

test(
  'rportd as its service user on files a run as root left in data_dir (host key, node-id): one line naming the file, the user and the fix',
  { skip: !runtimeRunsAs(65534) && `not root, or ${process.execPath} is not executable by nobody` },
  async (t) => {
    const dir = tmpDir(t);
    chmodSync(dir, 0o755);
    const data = `${dir}/data`;
    mkdirSync(data, { mode: 0o700 });
    chownSync(data, 65534, 65534);
    const port = await freePort();
    const keyFile = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
      .privateKey.export({ type: 'sec1', format: 'pem' })
      .toString();
    // What `sudo rportd` leaves behind: root's 0600 files in the service user's folder.
    for (const [file, owned] of [
      ['rportd-host-key', false],
      ['node-id', true],
    ] as const) {
      if (owned) chownSync(`${data}/rportd-host-key`, 65534, 65534);
      writeFileSync(`${data}/${file}`, file === 'node-id' ? 'node-a\n' : keyFile, { mode: 0o600 });
      const p = run(
        'rportd',
        ['--address', `127.0.0.1:${port}`, '--auth', CLIENT_AUTH, '--data-dir', data],
        {},
        { uid: 65534 },
      );
      assert.equal((await p.exited).code, 1, p.output);
      assert.deepEqual(p.lines, [
        `rportd: --data-dir "${data}": cannot use ${data} (${data}/${file}): permission denied to nobody, the user rportd runs as: give the folder and its files to nobody (chown -R nobody ${data}; a run as root leaves root's files behind), or set another [server] data_dir`,
      ]);
    }
  },
);
