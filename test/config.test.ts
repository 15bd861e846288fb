import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { test } from 'node:test';
import { cleanup, freePort, run, startServer, tmpDir, writeFile, CLIENT_AUTH } from '../harness/procs.js';

/** Runs a command that must fail on its config: exit code 2 and exactly one line on stderr. */
async function configError(command: 'rport' | 'rportd', args: string[]): Promise<string> {
  const p = run(command, args);
  const exit = await p.exited;
  assert.equal(exit.code, 2, `exit code for ${args.join(' ')}: output\n${p.output}`);
  assert.equal(p.lines.length, 1, `one line, got:\n${p.output}`);
  return p.lines[0]!;
}

const base = '[client]\nserver = "127.0.0.1:9"\nauth = "c:p"\n';

test('client config errors: one line naming file, section, key, value and the fix; exit 2', async (t) => {
  const dir = tmpDir(t);
  const f = (name: string, text: string) => writeFile(dir, name, text);
  assert.equal(
    await configError('rport', ['-c', f('a.conf', `${base}[connection]\nkeep_alive = "3 minutes"\n`)]),
    `${dir}/a.conf: [connection] keep_alive = "3 minutes" is not a duration (use e.g. '3m')`,
  );
  assert.equal(
    await configError('rport', ['-c', f('b.conf', `${base}[connection]\nmax_retry_count = "many"\n`)]),
    `${dir}/b.conf: [connection] max_retry_count = "many" is not a whole number (use e.g. 5)`,
  );
  assert.equal(
    await configError('rport', ['-c', f('c.conf', `${base}[connection]\nwatchdog_integration = "yes"\n`)]),
    `${dir}/c.conf: [connection] watchdog_integration = "yes" is not true or false`,
  );
  assert.equal(
    await configError('rport', ['-c', f('d.conf', '[client]\nauth = "c:p"\n')]),
    '[client] server is not set (use e.g. server = "rport.example.com:8080")',
  );
  // A malformed credential is likely a password: the line (which may reach a log) never repeats it.
  assert.equal(
    await configError('rport', ['-c', f('e.conf', '[client]\nserver = "x:1"\nauth = "nopassword"\n')]),
    `${dir}/e.conf: [client] auth = "(secret, not shown)" is not in the form "id:password"`,
  );
  assert.equal(
    await configError('rport', ['--server', 'x:1', '--auth', 'hunter2']),
    '--auth "(secret, not shown)" is not in the form "id:password"',
  );
  assert.equal(
    await configError('rportd', ['--auth', 'c1:ok', '--api-auth', 'hunter2', '--data-dir', dir]),
    '--api-auth "(secret, not shown)" is not in the form "user:password"',
  );
  assert.match(
    await configError('rport', ['-c', f('g.conf', '[client\nserver = 1\n')]),
    new RegExp(`^${dir}/g.conf: line 1: .* \\(the file is not valid TOML\\)$`),
  );
  assert.equal(
    await configError('rport', ['-c', `${dir}/missing.conf`]),
    `${dir}/missing.conf: cannot read the config file: no such file (check the path given with -c)`,
  );
  assert.equal(
    await configError('rport', ['-c', f('h.conf', `${base}[logging]\nlog_level = "loud"\n`)]),
    `${dir}/h.conf: [logging] log_level = "loud" is not one of error, warn, info, debug`,
  );
  assert.equal(
    await configError('rport', ['-c', f('i.conf', `${base}[connection]\nmax_retry_interval = "100ms"\n`)]),
    `${dir}/i.conf: [connection] max_retry_interval = "100ms" must be at least 1s (use e.g. '5m')`,
  );
});

test('a fingerprint too short to pin a key is refused as too short, naming the key; the full forms load', async (t) => {
  const dir = tmpDir(t);
  // Should a value be taken, the client makes one attempt and exits 1 rather than retrying forever.
  const once = ['--max-retry-count', '0'];
  const conf = (fp: string) => writeFile(dir, 'fp.conf', `${base}fingerprint = "${fp}"\n`);
  assert.match(
    await configError('rport', ['-c', conf('SHA256:abcdefghijkl'), ...once]),
    new RegExp(
      `^${dir}/fp\\.conf: \\[client\\] fingerprint = "SHA256:abcdefghijkl" is too short: 12 characters of the SHA256 fingerprint, fewer than 16 pin no key; copy the whole "SHA256:\\.\\.\\." from the line "host key fingerprint" that rportd logs at start$`,
    ),
  );
  assert.match(
    await configError('rport', ['--server', 'x:1', '--auth', 'c:p', '--fingerprint', '36:98:56:12', ...once]),
    /^--fingerprint "36:98:56:12" is too short: an MD5 fingerprint \(RPort's form aa:bb:\.\.\.\) pins a key from 12 of its 16 bytes on, this one has 4; give all of it/,
  );
  assert.match(
    await configError('rport', ['--server', 'x:1', '--auth', 'c:p', '--fingerprint', 'SHA256:not base64!', ...once]),
    /^--fingerprint "SHA256:not base64!" is not a fingerprint/,
  );
});

test('watchdog_integration needs keep_alive on and max_retry_count = -1 (0 included): exit 2 naming the key', async (t) => {
  const dir = tmpDir(t);
  assert.equal(
    await configError('rport', [
      '-c',
      writeFile(dir, 'a.conf', `${base}[connection]\nwatchdog_integration = true\nmax_retry_count = 0\n`),
    ]),
    `${dir}/a.conf: [connection] watchdog_integration = true needs max_retry_count = -1 (retry forever), but it is 0: set [connection] max_retry_count = -1`,
  );
  assert.equal(
    await configError('rport', [
      '-c',
      writeFile(dir, 'b.conf', `${base}[connection]\nwatchdog_integration = true\nkeep_alive = "0s"\n`),
    ]),
    `${dir}/b.conf: [connection] watchdog_integration = true needs keep_alive above 0s, but it is 0s: set [connection] keep_alive = "3m"`,
  );
  assert.equal(
    await configError('rport', [
      '--server',
      'x:1',
      '--auth',
      'c:p',
      '--watchdog-integration',
      '--max-retry-count',
      '5',
    ]),
    '--watchdog-integration "true" needs max_retry_count = -1 (retry forever), but it is 5: set [connection] max_retry_count = -1',
  );
});

test('flags: same checks as the file, flags win over the file, unknown flags are refused', async (t) => {
  const dir = tmpDir(t);
  const conf = writeFile(dir, 'rport.conf', `${base}[connection]\nkeep_alive = "3 minutes"\n`);
  // The flag overrides the bad file value, so the error is about the flag's own bad value...
  assert.equal(
    await configError('rport', ['-c', conf, '--keep-alive', '2 minutes']),
    `--keep-alive "2 minutes" is not a duration (use e.g. '3m')`,
  );
  // ...and a good flag makes the file's bad value irrelevant: the next error is the unreachable-on-purpose retry count.
  assert.equal(
    await configError('rport', ['-c', conf, '--keep-alive', '2m', '--max-retry-count', '-5']),
    '--max-retry-count "-5" must be -1 (retry forever), 0 or more',
  );
  assert.equal(
    await configError('rport', ['--server', 'x:1', '--auth', 'c:p', '--no-such-thing', '1s']),
    'unknown option --no-such-thing (see --help)',
  );
  // A misspelt flag gets the same help as a misspelt key.
  assert.equal(
    await configError('rport', ['--sever', 'x:1', '--auth', 'c:p']),
    'unknown option --sever (did you mean --server?) (see --help)',
  );
  assert.equal(
    await configError('rportd', ['--adress', '127.0.0.1:1', '--auth', 'c:p']),
    'unknown option --adress (did you mean --address?) (see --help)',
  );
  assert.equal(
    await configError('rport', ['--server', 'x:1', '--auth', 'c:p', '--keep-alive']),
    '--keep-alive needs a value',
  );
});

test('rportd config errors exit 2 with one line', async (t) => {
  const dir = tmpDir(t);
  assert.equal(
    await configError('rportd', ['-c', writeFile(dir, 'a.conf', '[server]\naddress = "nowhere"\nauth = "a:b"\n')]),
    `${dir}/a.conf: [server] address = "nowhere" is not host:port (use e.g. "0.0.0.0:8080")`,
  );
  const authFile = writeFile(dir, 'auth.json', '{"c1": ');
  assert.match(
    await configError('rportd', ['--address', '127.0.0.1:0', '--auth-file', authFile, '--data-dir', dir]),
    new RegExp(
      `^--auth-file "${authFile}": ${authFile}: not valid JSON: .*\\(expected \\{"client-id": "password", \\.\\.\\.\\}\\)$`,
    ),
  );
  assert.equal(
    await configError('rportd', [
      '--address',
      '127.0.0.1:0',
      '--auth',
      'a:b',
      '--api-address',
      '0.0.0.0:0',
      '--data-dir',
      dir,
    ]),
    '[api] auth is not set, and the API listens on 0.0.0.0:0, beyond this machine: set auth = "admin:a-long-password"',
  );
});

test("a name outside RPort's documented set and the key tables exits 2 with the nearest known name; flags and files agree", async (t) => {
  const dir = tmpDir(t);
  assert.equal(
    await configError('rportd', [
      '-c',
      writeFile(dir, 'rportd.conf', '[server]\nadress = "127.0.0.1:9"\nauth = "a:b"\n'),
    ]),
    `${dir}/rportd.conf: [server] adress is not a known key (did you mean address?)`,
  );
  assert.equal(
    await configError('rport', ['-c', writeFile(dir, 'a.conf', `${base}[connection]\nkeep_alvie = "1m"\n`)]),
    `${dir}/a.conf: [connection] keep_alvie is not a known key (did you mean keep_alive?)`,
  );
  assert.equal(
    await configError('rport', ['-c', writeFile(dir, 'b.conf', `${base}[conection]\nwatchdog_integration = true\n`)]),
    `${dir}/b.conf: [conection] is not a known section (did you mean [connection]?)`,
  );
  assert.equal(
    await configError('rport', ['-c', writeFile(dir, 'c.conf', `server = "127.0.0.1:9"\n[client]\nauth = "c:p"\n`)]),
    `${dir}/c.conf: server is outside any section (put it under [client])`,
  );
  assert.equal(
    await configError('rport', ['-c', writeFile(dir, 'd.conf', `${base}[monitoring]\nenabeld = true\n`)]),
    `${dir}/d.conf: [monitoring] enabeld is not a known key (did you mean enabled?)`,
    'a section rport does not implement is checked too',
  );
  assert.equal(
    await configError('rport', ['-c', writeFile(dir, 'e.conf', `${base}xyzzy_frobnicate = 1\n`)]),
    `${dir}/e.conf: [client] xyzzy_frobnicate is not a known key of [client] (see --help for the keys rport reads)`,
  );
  // Keys of rport's own tables are known whether or not RPort documents them.
  assert.equal(
    await configError('rportd', ['-c', writeFile(dir, 'f.conf', '[server]\nmax_auth_tries = 0\nauth = "a:b"\n')]),
    `${dir}/f.conf: [server] max_auth_tries = 0 must be 1 or more (use e.g. 6)`,
  );
});

test('a start-up failure reaches log_file as well as stderr, also when the config is what is wrong', async (t) => {
  const dir = tmpDir(t);
  const log = `${dir}/rport.log`;
  const typo = await configError('rport', [
    '-c',
    writeFile(dir, 'a.conf', `${base}[connection]\nkeep_alvie = "1m"\n[logging]\nlog_file = "${log}"\n`),
  ]);
  const level = await configError('rport', [
    '-c',
    writeFile(dir, 'b.conf', `${base}[logging]\nlog_file = "${log}"\nlog_level = "loud"\n`),
  ]);
  const lines = readFileSync(log, 'utf8').trimEnd().split('\n');
  assert.equal(lines.length, 2, lines.join('\n'));
  assert.ok(lines[0]!.endsWith(`ERROR rport: ${typo}`), lines[0]);
  assert.ok(lines[1]!.endsWith(`ERROR rport: ${level}`), lines[1]);
});

test('--help and --version exit 0', async () => {
  for (const cmd of ['rport', 'rportd'] as const) {
    const v = run(cmd, ['--version']);
    assert.equal((await v.exited).code, 0);
    assert.match(v.output, new RegExp(`^${cmd} \\d+\\.\\d+\\.\\d+$`));
    const h = run(cmd, ['--help']);
    assert.equal((await h.exited).code, 0);
    assert.match(h.output, /--max-retry-interval|--check-clients-connection-interval/);
    assert.match(h.output, /Exit codes/);
  }
});

test("a user's full RPort rport.conf loads: unimplemented sections are named in one info line", async (t) => {
  const server = await startServer(t);
  const dir = tmpDir(t);
  const conf = writeFile(
    dir,
    'rport.conf',
    `
[client]
  server = "127.0.0.1:${server.port}"
  fallback_servers = []
  server_switchback_interval = "2m"
  fingerprint = "${server.fingerprint}"
  auth = "${CLIENT_AUTH}"
  id = "full-conf-client"
  name = "My Test VM"
  tags = ["win", "server", "vm"]
  allow_root = false
  updates_interval = "4h"
  data_dir = "${dir}/data"
  tunnel_allowed = ["127.0.0.1"]
  remotes = []

[connection]
  keep_alive = "180s"
  keep_alive_timeout = "30s"
  max_retry_count = -1
  max_retry_interval = "5m"
  [connection.headers]
    User-Agent = "rport 0.9.12"

[logging]
  log_file = "${dir}/rport.log"
  log_level = "debug"

[remote-commands]
  enabled = true
  send_back_limit = 4194304
  allow = ['^/usr/bin/.*', '^/usr/local/bin/.*', '^C:\\\\Windows\\\\System32\\\\.*']
  deny = ['(\\||<|>|;|,|\\n|&)']
  order = ['allow', 'deny']

[remote-scripts]
  enabled = false

[monitoring]
  enabled = true
  interval = "60s"
  fs_type_include = ['ext3', 'ext4', 'xfs', 'jfs', 'ntfs', 'btrfs', 'hfs', 'apfs', 'fat32']
  pm_enabled = true
  pm_max_number_monitored_processes = 500
  net_lan = []
  net_wan = []

[file-reception]
  protected = ['/bin', '/sbin', '/boot', '/usr/bin']
  enabled = true

[interpreter-aliases]
`,
  );
  const client = run('rport', ['-c', conf]);
  cleanup(t, () => client.stop());
  const { eventually } = await import('../harness/procs.js');
  const log = await eventually(
    () => {
      let text = '';
      try {
        text = readFileSync(`${dir}/rport.log`, 'utf8');
      } catch {
        /* not yet */
      }
      return /connected to 127\.0\.0\.1/.test(text) ? text : undefined;
    },
    10_000,
    'connection logged to log_file',
  );
  const ignored = log.split('\n').filter((l) => l.includes('ignoring what this version does not implement'));
  assert.equal(ignored.length, 1, log);
  assert.match(ignored[0]!, /\[client\] allow_root, \[client\] updates_interval, \[monitoring\], \[file-reception\]$/);
  const clients = await server.api('/api/v1/clients');
  assert.deepEqual(
    clients.body.data.map((c: { id: string; name: string; tags: string[] }) => [c.id, c.name, c.tags]),
    [['full-conf-client', 'My Test VM', ['win', 'server', 'vm']]],
  );
  assert.deepEqual(await client.stop(), { code: 0, signal: null });
});

test('npm start: the demo runs a server and a connected client, and Ctrl-C stops both', async (t) => {
  const { spawn } = await import('node:child_process');
  const { Proc, CLI_DIR, cleanup: onEnd } = await import('../harness/procs.js');
  const dir = tmpDir(t);
  const demo = new Proc(
    spawn(process.execPath, [`${CLI_DIR}/demo.js`], {
      env: { ...process.env, RPORT_DEMO_DIR: dir },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  onEnd(t, () => demo.stop());
  await demo.waitFor(/\[rport \] .* connected to 127\.0\.0\.1:\d+ within/, 10_000);
  const m = await demo.waitFor(/clients: +curl -u (admin:\S+) (http:\S+)/);
  const res = await fetch(m[2]!, { headers: { authorization: `Basic ${Buffer.from(m[1]!).toString('base64')}` } });
  assert.equal((await res.json()).data[0].id, 'demo-client');
  assert.match(demo.output, /dashboard: +http:\/\/127\.0\.0\.1:\d+\/ +user admin, password \S+/);
  const tunnel = (await demo.waitFor(/tunnel: +curl (http:\/\/127\.0\.0\.1:\d+\/)/))[1]!;
  assert.match(await (await fetch(tunnel)).text(), /^Hello from behind the NAT/);
  // No secret on a command line (ps shows those to every user): they are in files only the user can read.
  const children = readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ')[1] === String(demo.pid);
      } catch {
        return false;
      }
    });
  assert.equal(children.length, 2);
  const secrets = [
    m[1]!.split(':')[1]!,
    /auth = "demo-client:([^"]+)"/.exec(readFileSync(`${dir}/server/rportd.conf`, 'utf8'))![1]!,
  ];
  for (const pid of children) {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    assert.match(cmdline, /-c\0/);
    for (const secret of secrets) assert.equal(cmdline.includes(secret), false, cmdline);
  }
  for (const f of ['server/rportd.conf', 'client/rport.conf'])
    assert.equal(statSync(`${dir}/${f}`).mode & 0o777, 0o600);
  demo.kill('SIGINT');
  assert.deepEqual(await demo.exited, { code: 0, signal: null });
});

test('rportd [database]: a bad db_type, host or a cluster without the API exit 2 with one line; an unreachable PostgreSQL fails the start with one line', async (t) => {
  const dir = tmpDir(t);
  const common = ['--address', '127.0.0.1:0', '--auth', 'a:b', '--data-dir', dir];
  assert.equal(
    await configError('rportd', [...common, '--db-type', 'mysql']),
    '--db-type "mysql" must be "sqlite" (one node) or "postgres" (a cluster)',
  );
  assert.match(
    await configError('rportd', [...common, '--db-type', 'postgres']),
    /\[api\] address is not set, and db_type = "postgres" needs it: the nodes of a cluster call each other through the API/,
  );
  assert.match(
    await configError('rportd', [
      ...common,
      '--db-type',
      'postgres',
      '--api-address',
      '127.0.0.1:0',
      '--db-host',
      'db.example:port',
    ]),
    /--db-host "db.example:port" is neither host:port nor a socket folder/,
  );
  const closed = await freePort();
  const p = run('rportd', [
    ...common,
    '--db-type',
    'postgres',
    '--api-address',
    '127.0.0.1:0',
    '--db-host',
    `127.0.0.1:${closed}`,
  ]);
  const exit = await p.exited;
  assert.equal(exit.code, 1, p.output);
  assert.match(
    p.output,
    new RegExp(
      `cannot open the registry database postgres://rport@127.0.0.1:${closed}/rport: .*ECONNREFUSED.*: check \\[database\\] db_host, db_name, db_user and db_password`,
    ),
  );
  assert.doesNotMatch(p.output, /\n\s+at /, 'no stack trace');
});
