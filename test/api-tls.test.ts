// TLS on the API ([api] cert_file, key_file, tls_min): a real rportd with a certificate made here by openssl,
// reached by curl with that certificate as its only CA, so a server that sent another or none fails.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import {
  API_AUTH,
  freePort,
  run,
  runProgram,
  startClient,
  startServer,
  tmpDir,
  type ServerHandle,
} from '../harness/procs.js';
import { curl, makeCert } from './helpers/tls-cert.js';

/** The port the API listens on, from the start-up line, which must name the scheme. */
async function apiPort(server: ServerHandle, scheme: 'http' | 'https'): Promise<number> {
  const m = await server.proc.waitFor(new RegExp(`API listening on ${scheme}://[^:]+:(\\d+)/api/v1/`));
  return Number(m[1]);
}

const header = (out: string, name: string) => new RegExp(`^${name}: (.*)\r$`, 'im').exec(out)?.[1];

test('the API over TLS: status with an https api_url and HSTS, login, an event stream, the dashboard; TLS 1.2 and plain HTTP refused', async (t) => {
  const dir = tmpDir(t);
  const { cert, key } = makeCert(dir, 'api');
  const server = await startServer(t, ['--api-cert-file', cert, '--api-key-file', key]);
  const port = await apiPort(server, 'https');
  const base = `https://127.0.0.1:${port}`;
  const ca = ['--cacert', cert];

  const status = await curl([...ca, '-i', '-u', API_AUTH, `${base}/api/v1/status`]);
  assert.equal(status.code, 0, status.err);
  assert.match(status.out, /^HTTP\/1\.1 200 /);
  assert.equal(header(status.out, 'strict-transport-security'), 'max-age=31536000');
  const body = JSON.parse(status.out.slice(status.out.indexOf('\r\n\r\n') + 4));
  assert.equal(body.data.cluster_nodes[0].api_url, base);

  // Refusals carry HSTS too: a browser learns it from the login page's first 401.
  const refused = await curl([...ca, '-i', `${base}/api/v1/status`]);
  assert.match(refused.out, /^HTTP\/1\.1 401 /);
  assert.equal(header(refused.out, 'strict-transport-security'), 'max-age=31536000');

  const dashboard = await curl([...ca, '-i', `${base}/`]);
  assert.match(dashboard.out, /^HTTP\/1\.1 200 /);
  assert.match(dashboard.out, /<script src="\/dashboard\.js"/);

  const login = await curl([...ca, '-u', API_AUTH, `${base}/api/v1/login`]);
  const token = JSON.parse(login.out).data.token as string;
  assert.ok(token, login.out);

  // The dashboard's live stream: the client list at once, and again when a client connects.
  const stream = runProgram(t, 'curl', [
    ...ca,
    '-sS',
    '-N',
    '--max-time',
    '60',
    `${base}/api/v1/events?token=${token}`,
  ]);
  await stream.waitFor(/^event: clients$/);
  await stream.waitFor(/^data: \[\]$/);
  const from = stream.mark();
  startClient(t, `127.0.0.1:${server.port}`, ['--id', 'tls-client']);
  await stream.waitFor(/^data: \[\{.*"id":"tls-client"/, 20_000, from);

  // tls_min defaults to "1.3", as RPort's.
  const old = await curl([...ca, '--tls-max', '1.2', `${base}/api/v1/status`]);
  assert.equal(old.code, 35, `TLS 1.2 refused by the handshake: ${old.err}`);
  assert.match(old.err, /protocol version/);
  // No plain HTTP beside it.
  const plain = await curl(['-i', '-u', API_AUTH, `http://127.0.0.1:${port}/api/v1/status`]);
  assert.doesNotMatch(plain.out, /200 OK/);
  assert.notEqual(plain.code, 0);
  // Another certificate than the one this server has is not trusted: curl really checks it.
  const other = makeCert(dir, 'other');
  const wrong = await curl(['--cacert', other.cert, `${base}/api/v1/status`]);
  assert.equal(wrong.code, 60, wrong.err);
});

test('tls_min = "1.2" lets TLS 1.2 in; without TLS no HSTS, and an API beyond loopback says how to get TLS and that ACME is not there', async (t) => {
  const dir = tmpDir(t);
  const { cert, key } = makeCert(dir, 'api');
  // A key others may read is named at start, as [server] tls_key is.
  chmodSync(key, 0o640);
  const acmeLine =
    /the API on .* speaks plain HTTP beyond this machine: set \[api\] cert_file and key_file .*ACME .* is not available/;

  const tls12 = await startServer(t, [
    '--api-address',
    `0.0.0.0:${await freePort()}`,
    '--api-cert-file',
    cert,
    '--api-key-file',
    key,
    '--api-tls-min',
    '1.2',
  ]);
  const port = await apiPort(tls12, 'https');
  const r = await curl([
    '--cacert',
    cert,
    '--tls-max',
    '1.2',
    '-u',
    API_AUTH,
    `https://127.0.0.1:${port}/api/v1/status`,
  ]);
  assert.equal(r.code, 0, r.err);
  assert.equal(JSON.parse(r.out).data.clients_connected, 0);
  assert.ok(!acmeLine.test(tls12.proc.output), tls12.proc.output);
  assert.match(
    tls12.proc.output,
    new RegExp(
      `WARN .*\\[api\\] key_file ${key.replace(/[.]/g, '\\.')} is accessible by group or others \\(mode 0640\\)`,
    ),
  );

  const plain = await startServer(t, ['--api-address', `0.0.0.0:${await freePort()}`]);
  const plainPort = await apiPort(plain, 'http');
  const answer = await curl(['-i', '-u', API_AUTH, `http://127.0.0.1:${plainPort}/api/v1/status`]);
  assert.match(answer.out, /^HTTP\/1\.1 200 /);
  assert.equal(header(answer.out, 'strict-transport-security'), undefined);
  assert.match(plain.proc.output, acmeLine);

  // On loopback, plain HTTP is this machine's business: no line.
  const local = await startServer(t);
  await apiPort(local, 'http');
  assert.ok(!acmeLine.test(local.proc.output), local.proc.output);
});

/** rportd must refuse to start: exit 2, one line, nothing listening. */
async function refused(t: TestContext, extra: string[]): Promise<string> {
  const port = await freePort();
  const p = run('rportd', [
    '--address',
    `127.0.0.1:${port}`,
    '--auth',
    'c:p',
    '--api-address',
    `127.0.0.1:${await freePort()}`,
    '--api-auth',
    API_AUTH,
    '--data-dir',
    tmpDir(t, 'rportd-'),
    ...extra,
  ]);
  const exit = await p.exited;
  assert.equal(exit.code, 2, p.output);
  assert.equal(p.lines.length, 1, `one line, got:\n${p.output}`);
  return p.lines[0]!;
}

test('a bad certificate or key stops rportd at start with one line naming both files and the fix, exit 2', async (t) => {
  const dir = tmpDir(t);
  const a = makeCert(dir, 'a');
  const b = makeCert(dir, 'b');
  const garbage = join(dir, 'garbage.pem');
  writeFileSync(garbage, 'not a certificate\n');
  const both = (cert: string, key: string) =>
    `--api-cert-file "${cert}" and --api-key-file "${key}": `.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const pair = (cert: string, key: string) => ['--api-cert-file', cert, '--api-key-file', key];

  assert.match(
    await refused(t, pair(a.cert, b.key)),
    new RegExp(
      `^${both(a.cert, b.key)}the key is not the certificate's: give the private key the certificate was made for`,
    ),
  );
  assert.match(
    await refused(t, pair(garbage, a.key)),
    new RegExp(`^${both(garbage, a.key)}cert_file is not a PEM certificate .*: give the certificate file$`),
  );
  assert.match(
    await refused(t, pair(a.cert, garbage)),
    new RegExp(`^${both(a.cert, garbage)}key_file is not a PEM private key .*: give the key file$`),
  );
  // The two swapped: the key where the certificate goes.
  assert.match(await refused(t, pair(a.key, a.cert)), new RegExp(`^${both(a.key, a.cert)}cert_file is not a PEM`));
  const missing = join(dir, 'missing.crt');
  assert.match(
    await refused(t, pair(missing, a.key)),
    new RegExp(`^${both(missing, a.key)}cert_file cannot be read: ENOENT: give the path of a file`),
  );
  const encrypted = join(dir, 'encrypted.key');
  execFileSync('openssl', ['pkey', '-in', a.key, '-aes256', '-passout', 'pass:x', '-out', encrypted], {
    timeout: 30_000,
  });
  assert.match(
    await refused(t, pair(a.cert, encrypted)),
    /key_file is encrypted: rportd cannot ask for its passphrase/,
  );
  assert.equal(
    await refused(t, ['--api-cert-file', a.cert]),
    `--api-cert-file "${a.cert}" is set without its partner: set both cert_file and key_file`,
  );
  assert.equal(
    await refused(t, [...pair(a.cert, a.key), '--api-tls-min', '1.1']),
    '--api-tls-min "1.1" must be "1.2" or "1.3" (use e.g. "1.3")',
  );

  // The clients' listener's pair is checked the same way.
  assert.match(
    await refused(t, ['--tls-cert', a.cert, '--tls-key', b.key]),
    new RegExp(
      `^${both(a.cert, b.key)
        .replace(/api-cert-file/, 'tls-cert')
        .replace(/api-key-file/, 'tls-key')}the key is not`,
    ),
  );

  // In a file, the file is named once and each key as written there.
  const conf = join(dir, 'rportd.conf');
  writeFileSync(conf, `[api]\ncert_file = "${a.cert}"\nkey_file = "${b.key}"\n`);
  assert.match(
    await refused(t, ['-c', conf]),
    new RegExp(
      `^${conf.replace(/[.]/g, '\\.')}: \\[api\\] cert_file = "${a.cert.replace(/[.]/g, '\\.')}" and \\[api\\] key_file = "${b.key.replace(/[.]/g, '\\.')}": the key is not the certificate's`,
    ),
  );
});
