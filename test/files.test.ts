import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { Logger, LogSink } from '../src/log.js';
import { SqliteDb } from '../src/server/db/sqlite.js';
import { saveMemory } from '../src/supervisor/memory.js';
import { loadHostKey } from '../src/transport/host-key.js';
import { StateFile, stateRecord } from '../src/watchdog/state-file.js';
import {
  API_AUTH,
  CLIENT_AUTH,
  cleanup,
  eventually,
  run,
  startClient,
  startServer,
  tmpDir,
  victim,
  writeFile,
} from '../harness/procs.js';

const ROOT = process.getuid?.() === 0;
const mode = (p: string) => statSync(p).mode & 0o7777;

/** The umask a careless service manager might give: files would come out world-writable or unreadable. */
function withUmask(t: TestContext, mask: number): void {
  const old = process.umask(mask);
  t.after(() => void process.umask(old));
}

function logTo(dir: string): { log: Logger; lines(): string[] } {
  const file = join(dir, 'test.log');
  return {
    log: new Logger(LogSink.file(file), 'debug', 'watchdog'),
    lines: () => {
      try {
        return readFileSync(file, 'utf8').split('\n').filter(Boolean);
      } catch {
        return [];
      }
    },
  };
}

const RECORD = stateRecord(
  'connected',
  'ping to s:1 succeeded within 1ms',
  Date.now() * 1000,
  Date.now() * 1000 + 60e6,
);

// --- atomic writes: a planted symlink is never followed -----------------------------------------------------

test('state.json: a symlink planted at the temporary name is not followed; state.json is 0644 whatever the umask', (t) => {
  withUmask(t, 0o077);
  const dir = tmpDir(t);
  const v = victim(tmpDir(t));
  // The name the client used to write through (".state.json.<pid>.tmp"), and a few random-looking ones.
  symlinkSync(v.path, join(dir, `.state.json.${process.pid}.tmp`));
  const { log, lines } = logTo(tmpDir(t));
  const sf = new StateFile(dir, log);
  assert.equal(sf.write(RECORD), true, lines().join('\n'));
  v.untouched();
  assert.ok(lstatSync(sf.path).isFile());
  assert.equal(mode(sf.path), 0o644);
  assert.equal(JSON.parse(readFileSync(sf.path, 'utf8')).last_state, 'connected');
  // Nothing of ours is left behind: only the planted link and state.json.
  assert.deepEqual(readdirSync(dir).sort(), [`.state.json.${process.pid}.tmp`, 'state.json']);
});

test('state.json: a symlink at state.json itself is replaced, not written through', (t) => {
  const dir = tmpDir(t);
  const v = victim(tmpDir(t));
  symlinkSync(v.path, join(dir, 'state.json'));
  const sf = new StateFile(dir, logTo(tmpDir(t)).log);
  assert.equal(sf.write(RECORD), true);
  v.untouched();
  assert.ok(lstatSync(sf.path).isFile(), 'state.json is now a regular file');
});

test(
  'state.json is never written into a folder other users can write: one error naming the folder and the fix',
  { skip: !ROOT && 'needs root to give the folder to another user' },
  (t) => {
    const parent = tmpDir(t);
    const open = join(parent, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    const { log, lines } = logTo(parent);
    const sf = new StateFile(open, log);
    assert.equal(sf.write(RECORD), false);
    assert.equal(sf.write(RECORD), false);
    assert.equal(readdirSync(open).length, 0, 'nothing written into it');
    const errors = lines().filter((l) => l.includes('cannot write'));
    assert.equal(errors.length, 1, lines().join('\n'));
    assert.match(
      errors[0]!,
      new RegExp(
        `ERROR watchdog: cannot write ${open}/state\\.json \\(folder writable by every user\\): .*the client keeps running\\. Not writing into it: ${open} is writable by every user \\(mode 0777, owner root\\): chmod go-w ${open}$`,
      ),
    );

    // Fixed: written again, and said so.
    chmodSync(open, 0o755);
    assert.equal(sf.write(RECORD), true);
    assert.match(lines().at(-1)!, /is being written again/);

    // Writable by its group: its members could replace the file as well.
    chmodSync(open, 0o775);
    assert.equal(sf.write(RECORD), false);
    assert.match(
      lines().at(-1)!,
      new RegExp(
        `cannot write ${open}/state\\.json \\(folder writable by its group\\): .*${open} is writable by its group \\(mode 0775, owner root\\): chmod g-w ${open}$`,
      ),
    );
    chmodSync(open, 0o755);
    assert.equal(sf.write(RECORD), true);

    // Sticky like /tmp: others cannot replace our files, so that is fine.
    chmodSync(open, 0o1777);
    assert.equal(sf.write(RECORD), true);

    // Owned by another (non-root) user, who could swap the file at any time.
    const theirs = join(parent, 'theirs');
    mkdirSync(theirs, { mode: 0o755 });
    chownSync(theirs, 65534, 65534);
    const other = new StateFile(theirs, log);
    assert.equal(other.write(RECORD), false);
    // The fix is to run as the folder's owner (a service's folder), not a chown that would take it from the service.
    assert.match(
      lines().at(-1)!,
      new RegExp(
        `cannot write ${theirs}/state\\.json \\(folder owned by another user\\): .*${theirs} belongs to nobody, not to root \\(this process\\), and nobody could replace files in it: run this as nobody \\(e\\.g\\. sudo -u nobody \\.\\.\\., as its service does\\), or use a folder of root's$`,
      ),
    );
    assert.doesNotMatch(lines().at(-1)!, /chown|writable by others/);
  },
);

test('host key: a symlink planted at the temporary name is not followed; the key is 0600 whatever the umask', (t) => {
  withUmask(t, 0);
  const dir = tmpDir(t);
  const v = victim(tmpDir(t));
  symlinkSync(v.path, join(dir, 'rportd-host-key.tmp'));
  const key = loadHostKey(dir, '');
  v.untouched();
  const file = join(dir, 'rportd-host-key');
  assert.equal(key.file, file);
  assert.ok(lstatSync(file).isFile());
  assert.equal(mode(file), 0o600);
  assert.equal(loadHostKey(dir, '').fingerprint, key.fingerprint, 'the kept key is read back');
});

test("rport-watchdog's memory file: a symlink planted at the temporary name is not followed", (t) => {
  const dir = tmpDir(t);
  const v = victim(tmpDir(t));
  const path = join(dir, 'rport-watchdog.json');
  symlinkSync(v.path, `${path}.tmp`);
  assert.equal(saveMemory(path, { strikes: 1, restarts: [5] }), undefined);
  v.untouched();
  assert.deepEqual(JSON.parse(readFileSync(path, 'utf8')), { strikes: 1, restarts: [5] });
});

test('a failed atomic write leaves no temporary file behind', (t) => {
  const dir = tmpDir(t);
  mkdirSync(join(dir, 'rport-watchdog.json', 'in-the-way'), { recursive: true }); // rename over a non-empty folder fails
  assert.ok(saveMemory(join(dir, 'rport-watchdog.json'), { strikes: 0, restarts: [] }));
  assert.deepEqual(readdirSync(dir), ['rport-watchdog.json']);
});

// --- file modes of the server ---------------------------------------------------------------------------------

test('rportd.db and its -wal and -shm are 0600 inside an existing data_dir, whatever the umask; an old 0644 database is tightened', async (t) => {
  withUmask(t, 0o022);
  const dir = tmpDir(t);
  chmodSync(dir, 0o755); // an existing, ordinary folder: its mode must not decide the database's
  const db = new SqliteDb(dir);
  await db.run('CREATE TABLE probe (x)');
  await db.run('INSERT INTO probe VALUES (1)');
  for (const f of ['rportd.db', 'rportd.db-wal', 'rportd.db-shm']) assert.equal(mode(join(dir, f)), 0o600, f);
  await db.close();

  chmodSync(join(dir, 'rportd.db'), 0o644);
  await new SqliteDb(dir).close();
  assert.equal(mode(join(dir, 'rportd.db')), 0o600);

  const fresh = join(tmpDir(t), 'new', 'data');
  await new SqliteDb(fresh).close();
  assert.equal(mode(fresh), 0o700, 'a data_dir rportd creates is 0700');
});

test(
  'rportd warns at start, one line each, when auth_file, tls_key or the host key is readable by others',
  { skip: process.platform === 'win32' && 'modes' },
  async (t) => {
    const dir = tmpDir(t);
    const authFile = writeFile(dir, 'auth.json', JSON.stringify({ other: 'pw' }));
    chmodSync(authFile, 0o644);
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
        '-keyout',
        `${dir}/key.pem`,
        '-out',
        `${dir}/cert.pem`,
      ],
      { stdio: 'ignore' },
    );
    chmodSync(`${dir}/key.pem`, 0o640);
    const dataDir = join(dir, 'data');
    mkdirSync(dataDir);
    loadHostKey(dataDir, '');
    chmodSync(join(dataDir, 'rportd-host-key'), 0o604);
    const server = await startServer(t, [
      '--auth-file',
      authFile,
      '--tls-cert',
      `${dir}/cert.pem`,
      '--tls-key',
      `${dir}/key.pem`,
      '--data-dir',
      dataDir,
    ]);
    const warnings = server.proc.lines.filter((l) => l.includes('WARN'));
    for (const [what, file, m] of [
      ['[server] auth_file', authFile, '0644'],
      ['[server] tls_key', `${dir}/key.pem`, '0640'],
      ['host key', join(dataDir, 'rportd-host-key'), '0604'],
    ]) {
      assert.equal(warnings.filter((l) => l.includes(file!)).length, 1, server.proc.output);
      assert.ok(
        warnings.some((l) =>
          l.endsWith(
            `server: ${what} ${file} is accessible by group or others (mode ${m}), and holds secrets: chmod 600 ${file}`,
          ),
        ),
        server.proc.output,
      );
    }

    // Private files: no warning.
    for (const f of [authFile, `${dir}/key.pem`, join(dataDir, 'rportd-host-key')]) chmodSync(f, 0o600);
    const quiet = await startServer(t, [
      '--auth-file',
      authFile,
      '--tls-cert',
      `${dir}/cert.pem`,
      '--tls-key',
      `${dir}/key.pem`,
      '--data-dir',
      dataDir,
    ]);
    assert.ok(!quiet.proc.lines.some((l) => l.includes('accessible by group or others')), quiet.proc.output);
  },
);

// --- rport-watchdog does not trust what it finds at state.json --------------------------------------------------

async function check(t: TestContext, args: string[]): Promise<{ code: number | null; out: string }> {
  const p = run('rport-watchdog', ['check', ...args]);
  cleanup(t, () => p.stop());
  // A FIFO used to block the read forever: bounded here so the test fails instead of hanging.
  const timer = setTimeout(() => p.kill('SIGKILL'), 10_000);
  const e = await p.exited;
  clearTimeout(timer);
  return { code: e.code, out: p.output };
}

test(
  'rport-watchdog check: a FIFO, a device or a folder at state.json is "unknown" at once, not a hang',
  { skip: process.platform === 'win32' && 'no mkfifo' },
  async (t) => {
    const dir = tmpDir(t);
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    let r = await check(t, ['--state', join(dir, 'fifo')]);
    assert.equal(r.code, 3, r.out);
    assert.equal(r.out, `unknown: state.json cannot be read: ${dir}/fifo is not a regular file (a FIFO)`);
    // /dev/zero never ends: the old reader grew a buffer towards 4 GB. Through a symlink, as an attacker would plant it.
    symlinkSync('/dev/zero', join(dir, 'state.json'));
    r = await check(t, ['--state', join(dir, 'state.json')]);
    assert.equal(r.code, 3, r.out);
    assert.equal(r.out, `unknown: state.json cannot be read: ${dir}/state.json is not a regular file (a device)`);
    r = await check(t, ['--state', dir]);
    assert.equal(r.code, 3, r.out);
    assert.match(r.out, /is not a regular file \(a folder\)$/);
  },
);

test('rport-watchdog check: a state.json over 64 KiB is "unknown", even when it would say healthy', async (t) => {
  const dir = tmpDir(t);
  const now = Math.floor(Date.now() / 1000);
  const doc = JSON.stringify({ last_update_ts: now, last_state: 'connected', next_update_by_ts: now + 60 });
  const small = writeFile(dir, 'small.json', doc + ' '.repeat(64 * 1024 - doc.length));
  assert.equal((await check(t, ['--state', small])).code, 0, 'exactly 64 KiB is read');
  const big = writeFile(dir, 'big.json', doc + ' '.repeat(64 * 1024 - doc.length + 1));
  const r = await check(t, ['--state', big]);
  assert.equal(r.code, 3, r.out);
  assert.equal(r.out, `unknown: state.json cannot be read: ${big} is larger than 65536 bytes`);
});

test('rport-watchdog check prints one line whatever last_message holds', async (t) => {
  const dir = tmpDir(t);
  const now = Math.floor(Date.now() / 1000);
  const state = writeFile(
    dir,
    'state.json',
    JSON.stringify({
      last_update_ts: now,
      last_state: 'connected',
      last_message: 'ok\nhealthy: forged\x1b[1A',
      next_update_by_ts: now + 60,
    }),
  );
  const r = await check(t, ['--state', state]);
  assert.equal(r.code, 0, r.out);
  assert.match(
    r.out,
    /^healthy: last update \d+s ago \(connected: ok\\nhealthy: forged\\x1b\[1A\); next update due within \d+s$/,
  );
});

test('rport-watchdog check: a next_update_by far in the future does not keep a silent client healthy', async (t) => {
  const dir = tmpDir(t);
  const now = Math.floor(Date.now() / 1000);
  const conf = writeFile(
    dir,
    'rport.conf',
    `[client]\nserver = "x:1"\nauth = "a:b"\ndata_dir = "${dir}"\n[connection]\nwatchdog_integration = true\nkeep_alive = "1m"\nmax_retry_interval = "1m"\n`,
  );
  writeFile(
    dir,
    'state.json',
    JSON.stringify({ last_update_ts: now - 200, last_state: 'connected', next_update_by_ts: now + 10 * 365 * 86400 }),
  );
  let r = await check(t, ['-c', conf]);
  assert.equal(r.code, 1, r.out);
  assert.match(
    r.out,
    /^hung: last update 20\ds ago \(connected\); it promised to write again by 1\d\ds ago \(its promise of \d+s after the last update is beyond the 91s heartbeat budget\) \(grace 10s\)$/,
  );
  // Without rport.conf: an hour at most.
  writeFile(
    dir,
    'state.json',
    JSON.stringify({ last_update_ts: now - 3700, last_state: 'connected', next_update_by_ts: now + 10 * 365 * 86400 }),
  );
  r = await check(t, ['--state', join(dir, 'state.json')]);
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /beyond the 3600s believed without rport\.conf\) \(grace 10s\)$/);
});

test(
  'rport-watchdog run as root beside a state.json the client user owns: a planted symlink log or FIFO memory file does not get it',
  { skip: (!ROOT || process.platform === 'win32') && 'needs root to act as the client user' },
  async (t) => {
    const dir = tmpDir(t);
    chmodSync(dir, 0o755);
    const data = join(dir, 'data');
    mkdirSync(data, { mode: 0o755 });
    chownSync(data, 65534, 65534); // the client's data_dir: its user can put anything there
    const now = Math.floor(Date.now() / 1000);
    writeFile(
      data,
      'state.json',
      JSON.stringify({ last_update_ts: now, last_state: 'connected', next_update_by_ts: now + 60 }),
    );
    const v = victim(dir);
    symlinkSync(v.path, join(data, 'rport-watchdog.log'));
    execFileSync('mkfifo', [join(data, 'rport-watchdog.json')]);
    chownSync(join(data, 'rport-watchdog.json'), 65534, 65534);
    const p = run('rport-watchdog', ['run', '--once', '--state', join(data, 'state.json'), '--restart-cmd', 'true']);
    cleanup(t, () => p.stop());
    const timer = setTimeout(() => p.kill('SIGKILL'), 10_000);
    const e = await p.exited;
    clearTimeout(timer);
    assert.equal(e.code, 0, p.output);
    v.untouched();
    assert.match(
      p.output,
      new RegExp(
        `${data}/rport-watchdog\\.log is a symlink, not followed because ${data} belongs to nobody, not to root \\(this process\\), and nobody could replace files in it; logging to stderr`,
      ),
    );
    assert.match(p.output, /INFO {2}rport-watchdog: healthy: /);
  },
);

// --- logs: one line per message, and no secrets -------------------------------------------------------------------

test('the logger escapes control characters: a message is always one line', (t) => {
  const dir = tmpDir(t);
  const { log, lines } = logTo(dir);
  log.warn(
    'failed login as "x\n2026-01-01 00:00:00.000 INFO  server: client admin connected\r\x1b[2J\x00\x7f\x85\u2028\u2029\ttab"',
  );
  assert.equal(lines().length, 1, lines().join('\n'));
  assert.match(
    lines()[0]!,
    /WARN {2}watchdog: failed login as "x\\n2026-01-01 00:00:00\.000 INFO {2}server: client admin connected\\r\\x1b\[2J\\x00\\x7f\\x85\\u2028\\u2029\ttab"$/,
  );
});

test('an SSH user name with a newline cannot forge a line in the server log', async (t) => {
  const server = await startServer(t);
  // The auth id ends at the first colon, so the forged line has none.
  const forged = '2026-01-01 00.00.00.000 INFO  clients client evil connected from 10.0.0.1';
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--auth', `evil\n${forged}:pw`, '--max-retry-count', '0']);
  await client.exited;
  await server.proc.waitFor(/failed login as/);
  assert.ok(!server.proc.lines.some((l) => l.startsWith(forged)), server.proc.output);
  assert.ok(
    server.proc.lines.some((l) => l.includes(`WARN  clients: failed login as "evil\\n${forged}" from 127.0.0.1`)),
    server.proc.output,
  );
  assert.ok(!client.lines.some((l) => l.startsWith(forged)), client.output);
});

test('no secret appears in any log line of a debug run: client logins right and wrong, API basic and bearer auth', async (t) => {
  // rportd logs to stderr, the client to a file (and says nothing on stderr unless that fails).
  const server = await startServer(t);
  const logFile = join(tmpDir(t), 'rport.log');
  const [, clientPw] = CLIENT_AUTH.split(':');
  const [apiUser, apiPw] = API_AUTH.split(':');
  const wrongClientPw = 'wr0ng-client-pw';
  const wrongApiPw = 'wr0ng-api-pw';

  const good = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'c-secret', '--log-file', logFile]);
  const bad = startClient(t, `127.0.0.1:${server.port}`, [
    '--auth',
    `client1:${wrongClientPw}`,
    '--max-retry-count',
    '0',
  ]);
  await bad.exited;
  await eventually(
    async () =>
      (await server.api('/api/v1/clients')).body.data.some(
        (c: { id: string; connected: boolean }) => c.id === 'c-secret' && c.connected,
      )
        ? true
        : undefined,
    10_000,
    'client c-secret connected',
  );

  const base = `http://127.0.0.1:${server.apiPort}/api/v1`;
  const basic = (u: string, p: string) => ({ authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}` });
  assert.equal((await fetch(`${base}/clients`, { headers: basic(apiUser!, apiPw!) })).status, 200);
  assert.equal((await fetch(`${base}/clients`, { headers: basic(apiUser!, wrongApiPw) })).status, 401);
  const login = await fetch(`${base}/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: apiUser, password: apiPw }),
  });
  const token = ((await login.json()) as { data: { token: string } }).data.token;
  assert.equal((await fetch(`${base}/clients`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
  assert.equal(
    (await fetch(`${base}/clients?token=${token}`)).status,
    401,
    'a token in the query only counts for the event stream',
  );
  assert.equal(
    (
      await fetch(`${base}/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: apiUser, password: wrongApiPw }),
      })
    ).status,
    401,
  );
  const badToken = 'not-a-real-token-0123456789';
  assert.equal((await fetch(`${base}/clients`, { headers: { authorization: `Bearer ${badToken}` } })).status, 401);
  await server.proc.waitFor(/failed API login/);

  await good.stop();
  await server.proc.stop();
  const logs = {
    'rportd stderr': server.proc.output,
    'client log file': readFileSync(logFile, 'utf8'),
    'client stderr': good.output,
    'failing client stderr': bad.output,
  };
  for (const text of [logs['rportd stderr'], logs['client log file']])
    assert.match(text, /DEBUG/, 'the run logged at debug level');
  for (const secret of [clientPw!, wrongClientPw, apiPw!, wrongApiPw, token, badToken]) {
    for (const [where, text] of Object.entries(logs))
      assert.ok(!text.includes(secret), `${where} contains the secret "${secret}":\n${text}`);
  }
});
