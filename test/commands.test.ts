import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { checkCommand } from '../src/client/jobs/filter.js';
import type { CommandsConfig } from '../src/config/client-config.js';
import { ClientRegistry, soloCluster } from '../src/server/client-registry.js';
import { SqliteDb } from '../src/server/db/sqlite.js';
import { JobService } from '../src/server/jobs/job-service.js';
import { Store } from '../src/server/store/index.js';
import { Logger, LogSink } from '../src/log.js';
import { ControlChannel, RemoteError } from '../src/transport/control-channel.js';
import { METHOD } from '../src/transport/protocol.js';
import { apiCall, runJob } from './helpers/jobs-api.js';
import { CLIENT_BASE, commandsOf, hostileServer } from './helpers/client-jobs.js';
import { cleanup, eventually, run, startClient, startServer, tmpDir, writeFile } from '../harness/procs.js';

test("filter: RPort's allow, deny and order rules (rport.example.conf) as a table", (t) => {
  const dir = tmpDir(t);
  const defaults = commandsOf(dir, '');
  const zip = commandsOf(dir, "[remote-commands]\nallow = ['^/usr/bin/.*']\ndeny = ['^/usr/bin/zip']\n");
  const onlyZip = commandsOf(dir, "[remote-commands]\norder = ['deny','allow']\ndeny = ['.*']\nallow = ['zip$']\n");
  const denyAllowOpen = commandsOf(
    dir,
    "[remote-commands]\norder = ['deny','allow']\nallow = []\ndeny = ['^/sbin/']\n",
  );
  const insensitive = commandsOf(dir, "[remote-commands]\nallow = ['(?i)^c:\\\\windows\\\\system32\\\\.*']\n");
  const cases: Array<[string, CommandsConfig, string, boolean]> = [
    ['defaults: a full path in /usr/bin', defaults, '/usr/bin/uptime', true],
    ['defaults: /usr/local/bin', defaults, '/usr/local/bin/tool --x', true],
    ['defaults: System32', defaults, 'C:\\Windows\\System32\\ipconfig.exe /all', true],
    ['defaults: no full path', defaults, 'uptime', false],
    ['defaults: /bin is not allowed', defaults, '/bin/ls', false],
    ['defaults: a pipe', defaults, '/usr/bin/cat /etc/passwd | /usr/bin/nc x 1', false],
    ['defaults: ;', defaults, '/usr/bin/id; /usr/bin/reboot', false],
    ['defaults: &', defaults, '/usr/bin/sleep 1 & /usr/bin/x', false],
    ['defaults: a redirect', defaults, '/usr/bin/echo x > /etc/passwd', false],
    ['defaults: <', defaults, '/usr/bin/mail x < /etc/shadow', false],
    ['defaults: a comma', defaults, '/usr/bin/echo a,b', false],
    ['defaults: a newline', defaults, '/usr/bin/id\n/usr/bin/reboot', false],
    ['defaults: $', defaults, '/usr/bin/echo $HOME', false],
    ['defaults: a program that runs another', defaults, '/usr/bin/env /bin/sh', false],
    ['defaults: System32 cmd.exe', defaults, 'C:\\Windows\\System32\\CMD.EXE /c whoami', false],
    ['defaults: a name that only starts like a runner', defaults, '/usr/bin/envsubst', true],
    ['allow,deny example: /usr/bin/ls', zip, '/usr/bin/ls', true],
    ['allow,deny example: /usr/bin/zip is denied', zip, '/usr/bin/zip -r a.zip .', false],
    ['allow,deny example: nothing matches: denied', zip, '/opt/x', false],
    ['deny,allow example: ends in zip', onlyZip, '/usr/bin/zip', true],
    ['deny,allow example: anything else denied', onlyZip, '/usr/bin/unzip x', false],
    ['deny,allow: matches neither: permitted', denyAllowOpen, '/opt/tool', true],
    ['deny,allow: matches deny only: denied', denyAllowOpen, '/sbin/reboot', false],
    ['(?i) of Go becomes the i flag', insensitive, 'C:\\WINDOWS\\System32\\whoami.exe', true],
  ];
  for (const [name, cfg, command, allowed] of cases) assert.equal(checkCommand(cfg, command).allowed, allowed, name);
  assert.deepEqual(
    [
      defaults.enabled,
      defaults.sendBackLimit,
      defaults.scriptsEnabled,
      defaults.order,
      defaults.allow.map(String),
      defaults.deny.map(String),
    ],
    [
      true,
      4194304,
      false,
      'allow-deny',
      ['/^\\/usr\\/bin\\/.*/', '/^\\/usr\\/local\\/bin\\/.*/', '/^C:\\\\Windows\\\\System32\\\\.*/'],
      ['/(\\||<|>|;|,|\\n|&|\\$|`)/', String(defaults.deny[1])],
    ],
  );
  assert.deepEqual(
    commandsOf(
      dir,
      "[interpreter-aliases]\npy = '/usr/bin/python3'\npwsh7enc = ['C:\\pwsh.exe', 'windows-1252', 'cp437']\n",
    ).aliases,
    { py: '/usr/bin/python3', pwsh7enc: 'C:\\pwsh.exe' },
  );
});

test('bad [remote-commands] values: one line naming the key, exit 2', async (t) => {
  const dir = tmpDir(t);
  const cases: Array<[string, RegExp]> = [
    [
      "[remote-commands]\nallow = ['^/usr/bin/(']\n",
      /\[remote-commands\] allow = .* has "\^\/usr\/bin\/\(", which is not a regular expression/,
    ],
    [
      "[remote-commands]\norder = ['allow']\n",
      /\[remote-commands\] order = \["allow"\] must be \['allow','deny'\] or \['deny','allow'\]/,
    ],
    ['[remote-commands]\nsend_back_limit = 0\n', /\[remote-commands\] send_back_limit = 0 must be 1 to 16777216 bytes/],
    ['[remote-scripts]\nenabled = "yes"\n', /\[remote-scripts\] enabled = "yes" is not true or false/],
    ['[interpreter-aliases]\npy = 3\n', /\[interpreter-aliases\] py is not an interpreter path/],
  ];
  for (const [text, re] of cases) {
    const p = run('rport', ['-c', writeFile(dir, `bad${Math.random()}.conf`, CLIENT_BASE + text)]);
    const exit = await p.exited;
    assert.equal(exit.code, 2, p.output);
    assert.equal(p.lines.length, 1, p.output);
    assert.match(p.lines[0]!, re);
  }
});

test("a hostile server cannot get past the client's filter, scripts off, or its interpreters", async (t) => {
  const dir = tmpDir(t);
  const marker = (n: number) => join(dir, `pwned-${n}`);
  const server = await hostileServer(t, commandsOf(dir, ''));
  const ask = (over: Record<string, unknown>) =>
    server.request(
      METHOD.jobRun,
      {
        jid: `j${Math.random().toString(36).slice(2)}`,
        command: '/usr/bin/true',
        is_script: false,
        interpreter: '',
        cwd: '',
        timeout_sec: 5,
        ...over,
      },
      5000,
    );
  const refusals: Array<[Record<string, unknown>, RegExp]> = [
    [{ command: `/usr/bin/true; /usr/bin/touch ${marker(1)}` }, /command is not allowed/],
    [{ command: `/bin/touch ${marker(2)}` }, /command is not allowed: .* no \[remote-commands\] allow pattern/],
    [{ command: `/usr/bin/touch ${marker(3)} && /usr/bin/true` }, /command is not allowed/],
    [{ command: `/usr/bin/touch\n${marker(4)}` }, /command is not allowed/],
    [{ command: `/usr/bin/touch ${marker(5)}`, is_script: true }, /remote scripts are disabled/],
    // The filter checks the command line; an interpreter of the server's choosing would run it otherwise.
    [
      { command: `/usr/bin/touch ${marker(6)}`, interpreter: '/usr/bin/perl' },
      /interpreter "\/usr\/bin\/perl" refused: commands run without a shell/,
    ],
    [{ command: `/usr/bin/touch ${marker(7)}`, jid: '../../etc' }, /malformed job request: jid/],
    [{ command: `/usr/bin/touch ${marker(8)}`, timeout_sec: 0 }, /malformed job request: timeout_sec/],
  ];
  for (const [over, re] of refusals) {
    await assert.rejects(
      ask(over),
      (err: Error) => err instanceof RemoteError && re.test(err.message),
      JSON.stringify(over),
    );
  }
  for (let i = 1; i <= 8; i++) assert.ok(!existsSync(marker(i)), `marker ${i} was not created`);

  const off = await hostileServer(t, commandsOf(dir, '[remote-commands]\nenabled = false\n'));
  await assert.rejects(
    off.request(
      METHOD.jobRun,
      { jid: 'a1', command: `/usr/bin/touch ${marker(9)}`, is_script: false, interpreter: '', cwd: '', timeout_sec: 5 },
      5000,
    ),
    /remote commands execution is disabled/,
  );
  assert.ok(!existsSync(marker(9)));
  // The control: an allowed command does run.
  await ask({ command: `/usr/bin/touch ${marker(10)}` });
  await eventually(() => existsSync(marker(10)) || undefined, 5000, 'the allowed command to run');
});

/** Lines of the client's log matching `re` after `from`. */
const countLines = (lines: string[], re: RegExp, from: number) => lines.slice(from).filter((l) => re.test(l)).length;

function alive(pid: number): boolean {
  try {
    // A zombie (reaped late by a container's init) counts as dead.
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

test('commands and scripts on a real client: allowed, refused, script temp files, timeout kills the tree, truncation, pings keep going', async (t) => {
  const dir = tmpDir(t);
  const server = await startServer(t);
  const conf = writeFile(
    dir,
    'rport.conf',
    "[remote-commands]\nallow = ['^/usr/bin/.*', '^/bin/.*']\nsend_back_limit = 1000\n[remote-scripts]\nenabled = true\n",
  );
  const data = tmpDir(t);
  const client = startClient(t, `127.0.0.1:${server.port}`, [
    '-c',
    conf,
    '--id',
    'box',
    '--data-dir',
    data,
    '--watchdog-integration',
    '--watchdog-interval',
    '500ms',
  ]);
  await client.waitFor(/connected to/);
  /** state.json as the watchdog writes it, sampled while `work` runs: each sample must keep the watchdog's own promise. */
  const watchdogDuring = async <T>(work: Promise<T>): Promise<{ value: T; updates: number }> => {
    const seen = new Set<string>();
    const sampler = setInterval(() => {
      try {
        const s = JSON.parse(readFileSync(join(data, 'state.json'), 'utf8'));
        assert.equal(s.last_state, 'connected');
        assert.ok(Date.now() / 1000 <= s.next_update_by_ts + 1, `state.json overdue: ${JSON.stringify(s)}`);
        seen.add(s.last_update);
      } catch (err) {
        if (err instanceof assert.AssertionError) throw err;
      }
    }, 100);
    try {
      return { value: await work, updates: seen.size };
    } finally {
      clearInterval(sampler);
    }
  };

  const ok = await runJob(server, 'box', { command: '/usr/bin/echo hello', timeout_sec: 10 });
  assert.equal(ok.status, 'successful', JSON.stringify(ok));
  assert.equal(ok.result.stdout, 'hello\n');
  assert.equal(ok.exit_code, 0);
  assert.equal(ok.created_by, 'admin');
  assert.ok(ok.pid > 0 && Date.parse(ok.finished_at) >= Date.parse(ok.started_at));

  const failing = await runJob(server, 'box', { command: '/usr/bin/ls /nonexistent-folder' });
  assert.equal(failing.status, 'failed');
  assert.match(failing.result.stderr, /nonexistent-folder/);
  assert.notEqual(failing.exit_code, 0);

  const denied = await runJob(server, 'box', { command: '/usr/bin/id; /usr/bin/uptime' });
  assert.equal(denied.status, 'failed');
  assert.match(denied.error, /command is not allowed/);
  await client.waitFor(/job \S+: refused: command is not allowed/);

  // A script: written to a private folder, which goes afterwards.
  const script = await runJob(
    server,
    'box',
    { script: Buffer.from('echo "$0"\nstat -c %a "$(dirname "$0")"\n').toString('base64'), interpreter: 'sh' },
    'scripts',
  );
  assert.equal(script.status, 'successful', JSON.stringify(script));
  const [path, mode] = script.result.stdout.trim().split('\n');
  assert.equal(mode, '700');
  assert.ok(!existsSync(path), `${path} is removed`);

  // A script that leaves a child behind and sleeps past its timeout: the whole tree dies, pings go on.
  const pidFile = join(dir, 'grandchild.pid');
  let from = client.mark();
  const { value: slow, updates: slowUpdates } = await watchdogDuring(
    runJob(
      server,
      'box',
      { script: Buffer.from(`sleep 300 &\necho $! > ${pidFile}\nsleep 300\n`).toString('base64'), timeout_sec: 3 },
      'scripts',
    ),
  );
  assert.ok(slowUpdates >= 3, `state.json updated ${slowUpdates} times while the script slept`);
  assert.equal(slow.status, 'failed');
  assert.match(slow.error, /timed out after 3s/);
  const grandchild = Number(readFileSync(pidFile, 'utf8'));
  await eventually(() => (alive(grandchild) ? undefined : true), 5000, 'the grandchild to die');
  assert.ok(countLines(client.lines, /ping to \S+ succeeded/, from) >= 2, 'pings while the command slept');

  // A flood: cut at send_back_limit with RPort's marker, and the keep-alive pings are not held up.
  from = client.mark();
  const { value: flood, updates: floodUpdates } = await watchdogDuring(
    runJob(server, 'box', { command: '/usr/bin/yes', timeout_sec: 3 }),
  );
  assert.ok(floodUpdates >= 3, `state.json updated ${floodUpdates} times during the flood`);
  assert.equal(flood.status, 'failed');
  assert.match(flood.error, /timed out/);
  assert.equal(flood.result.stdout.indexOf('[maximum send_back_limit of 1000 bytes exceeded'), 1001);
  assert.ok(flood.result.stdout.startsWith('y\ny\n'));
  assert.ok(
    countLines(client.lines, /ping to \S+ succeeded/, from) >= 2,
    `pings during the flood:\n${client.lines.slice(from).join('\n')}`,
  );
  assert.equal(countLines(client.lines, /connection to .* lost/, 0), 0);

  const list = await apiCall(server, 'GET', '/api/v1/clients/box/commands');
  assert.equal(list.body.meta.count, 6);
  assert.equal(list.body.data[0].jid, flood.jid, 'newest first');
  assert.equal(list.body.data[0].result, undefined, 'lists leave the output out');
  const offline = await apiCall(server, 'POST', '/api/v1/clients/nobody/commands', { command: '/usr/bin/true' });
  assert.equal(offline.status, 404);
  const sudo = await apiCall(server, 'POST', '/api/v1/clients/box/commands', {
    command: '/usr/bin/true',
    is_sudo: true,
  });
  assert.equal(sudo.status, 400);
  assert.match(sudo.body.errors[0].title, /is_sudo is not implemented/);
  const badScript = await apiCall(server, 'POST', '/api/v1/clients/box/scripts', { script: 'not base64!' });
  assert.equal(badScript.status, 400);
  // Within 128 KiB, but control characters would make its control message too long for the client: refused here.
  const escaped = await apiCall(server, 'POST', '/api/v1/clients/box/scripts', {
    script: Buffer.alloc(100 << 10, 1).toString('base64'),
  });
  assert.equal(escaped.status, 400);
  assert.match(escaped.body.errors[0].title, /once JSON-encoded/);
  assert.equal(countLines(client.lines, /connection to .* lost/, 0), 0);
});

test('scripts are refused while [remote-scripts] is off (the default), whatever the server asks', async (t) => {
  const server = await startServer(t);
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'plain']);
  await client.waitFor(/connected to/);
  const j = await runJob(server, 'plain', { script: Buffer.from('/usr/bin/id\n').toString('base64') }, 'scripts');
  assert.equal(j.status, 'failed');
  assert.match(j.error, /remote scripts are disabled/);
  assert.equal(j.is_script, true);
});

test('a command running across an rportd restart: the job shows unknown, then its result arrives after the reconnect', async (t) => {
  const dir = tmpDir(t);
  const server = await startServer(t);
  const gate = join(dir, 'gate');
  const conf = writeFile(dir, 'rport.conf', '[remote-scripts]\nenabled = true\n');
  const client = startClient(t, `127.0.0.1:${server.port}`, ['-c', conf, '--id', 'steady']);
  await client.waitFor(/connected to/);
  // The script waits for the test to open the gate, so that it surely runs through the restart.
  const r = await apiCall(server, 'POST', '/api/v1/clients/steady/scripts', {
    script: Buffer.from(`echo before\nwhile [ ! -e ${gate} ]; do sleep 0.1; done\necho after\n`).toString('base64'),
    timeout_sec: 60,
  });
  assert.equal(r.status, 200);
  const jid = r.body.data.jid;
  await client.waitFor(/job \S+: script started/);
  await server.proc.stop();
  const again = await startServer(t, [], { port: server.port, apiPort: server.apiPort, dataDir: server.dataDir });
  const unknown = (await apiCall(again, 'GET', `/api/v1/clients/steady/commands/${jid}`)).body.data;
  assert.equal(unknown.status, 'unknown', 'not running forever');
  assert.match(unknown.error, /rportd restarted/);
  writeFile(dir, 'gate', '');
  const done = await eventually(
    async () => {
      const j = (await apiCall(again, 'GET', `/api/v1/clients/steady/commands/${jid}`)).body.data;
      return j.status === 'successful' ? j : undefined;
    },
    30_000,
    'the result after the reconnect',
  );
  assert.equal(done.result.stdout, 'before\nafter\n');
  assert.equal(done.created_by, 'admin');
});

test('a hostile client cannot write results into jobs that are not its own, out of order, or past the bounds', async (t) => {
  const dir = tmpDir(t);
  const db = new SqliteDb(join(dir, 'data'));
  const store = new Store(db);
  await store.migrate();
  const log = new Logger(LogSink.file(join(dir, 'rportd.log')), 'debug', 'jobs');
  const registry = new ClientRegistry(store, soloCluster('test-node'), log);
  const jobs = new JobService(store.jobs, registry, log);
  cleanup(t, async () => {
    jobs.stop();
    await registry.close();
    await store.close();
  });
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  cleanup(t, () => srv.close());
  /** One client's connection: the server's end attached to the job service, the client's end returned. */
  const connectAs = async (clientId: string): Promise<ControlChannel> => {
    const accepted = new Promise<Socket>((r) => srv.once('connection', r));
    const sock = connect((srv.address() as AddressInfo).port, '127.0.0.1');
    const serverSide = new ControlChannel(await accepted);
    jobs.attach(clientId, serverSide);
    const clientSide = new ControlChannel(sock);
    clientSide.handle(METHOD.jobRun, () => ({ pid: 4242, started_at: Date.now() }));
    cleanup(t, () => clientSide.close());
    return clientSide;
  };
  const victim = await connectAs('victim');
  const attacker = await connectAs('attacker');
  const job = await jobs.runOne(
    'victim',
    { command: '/usr/bin/uptime', is_script: false, interpreter: '', cwd: '', timeout_sec: 60 },
    'admin',
  );
  assert.equal(job.status, 'running');
  assert.equal(job.pid, 4242);
  const part = (seq: number, data: Buffer, jid = job.jid) => ({
    jid,
    seq,
    stream: 'stdout',
    data: data.toString('base64'),
  });
  const done = (parts: number, jid = job.jid) => ({
    jid,
    parts,
    status: 'successful',
    exit_code: 0,
    error: '',
    started_at: Date.now(),
    finished_at: Date.now(),
  });

  await assert.rejects(attacker.request(METHOD.jobPart, part(0, Buffer.from('forged')), 5000), /is not this client's/);
  await assert.rejects(attacker.request(METHOD.jobDone, done(0), 5000), /is not this client's/);
  await assert.rejects(attacker.request(METHOD.jobDone, done(0, 'no-such-job'), 5000), /not one of this client's jobs/);
  // Live output for another client's job is dropped, not shown.
  await attacker.request(METHOD.jobOutput, { jobs: [{ jid: job.jid, stdout: 'forged live', stderr: '' }] }, 5000);
  assert.equal(jobs.liveOutput(job.jid), undefined);
  // Live output past what is kept (1 MiB a stream) goes to no event stream either: a flood is bounded per job.
  let emitted = 0;
  jobs.on('output', (o: { stdout: string; stderr: string }) => (emitted += o.stdout.length + o.stderr.length));
  const flood = 'o'.repeat(100 << 10);
  for (let i = 0; i < 12; i++)
    await victim.request(METHOD.jobOutput, { jobs: [{ jid: job.jid, stdout: flood, stderr: flood }] }, 5000);
  assert.equal(emitted, 2 << 20, 'live output sent on to event streams');
  assert.equal(jobs.liveOutput(job.jid)!.stdout.length, 1 << 20);
  // The owner itself: parts in order only, each stream within its bound, the end must count them all.
  await assert.rejects(victim.request(METHOD.jobPart, part(1, Buffer.from('x')), 5000), /out of order/);
  await victim.request(METHOD.jobPart, part(0, Buffer.alloc(96 << 10, 'a')), 5000);
  await assert.rejects(victim.request(METHOD.jobDone, done(2), 5000), /ended with 1 of its 2 result parts/);
  for (let seq = 1; seq <= 170; seq++) {
    const r = victim.request(METHOD.jobPart, part(seq, Buffer.alloc(96 << 10, 'a')), 5000);
    if (seq < 170) await r;
    else await assert.rejects(r, /is over \d+ bytes/);
  }
  // Starting over from part 0 is allowed (a re-sent result after a reconnect): the honest result lands.
  await victim.request(METHOD.jobPart, part(0, Buffer.from('up 3 days\n')), 5000);
  await victim.request(METHOD.jobDone, done(1), 5000);
  const row = (await jobs.store.job(job.jid))!;
  assert.deepEqual([row.status, row.stdout, row.exit_code], ['successful', 'up 3 days\n', 0]);
  // Finished is final: a second result, even from the owner, is refused.
  await assert.rejects(
    victim.request(METHOD.jobDone, done(0), 5000),
    /not one of this client's jobs awaiting a result/,
  );
});
