import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MAX_STATE_BYTES } from '../src/supervisor/options.js';
import { judge, MAX_PROMISE_SEC, type VerdictInput } from '../src/supervisor/verdict.js';
import { cleanup, eventually, run, startClient, startServer, tmpDir, writeFile } from '../harness/procs.js';

interface Case {
  name: string;
  text?: string;
  missing?: boolean;
  unreadable?: string;
  now: number;
  grace: number;
  budget?: number;
  threshold?: number;
  expect: string;
}
const CASES: { cases: Case[] } = JSON.parse(
  readFileSync(fileURLToPath(new URL('../../test/watchdog-verdict-cases.json', import.meta.url)), 'utf8'),
);

test('hang rules: every case shared with the PowerShell watchdog', () => {
  assert.ok(CASES.cases.length >= 10);
  for (const c of CASES.cases) {
    const file: VerdictInput['file'] = c.missing
      ? { missing: true }
      : c.unreadable
        ? { unreadable: c.unreadable }
        : { text: c.text! };
    const v = judge({ file, nowSec: c.now, graceSec: c.grace, budgetSec: c.budget, thresholdSec: c.threshold });
    assert.equal(v.status, c.expect, `${c.name}: ${v.reason}`);
  }
});

test('the PowerShell watchdog has the same limits: the size of state.json and the promise believed without rport.conf', () => {
  const ps = readFileSync(
    fileURLToPath(new URL('../../packaging/windows/rport-watchdog.ps1', import.meta.url)),
    'utf8',
  );
  assert.match(ps, new RegExp(`^\\$MaxPromiseSec = ${MAX_PROMISE_SEC}$`, 'm'));
  assert.match(ps, new RegExp(`^\\$MaxStateBytes = ${MAX_STATE_BYTES}$`, 'm'));
  assert.match(ps, /\$item -isnot \[IO\.FileInfo\]/, 'refuses what is not a regular file');
});

async function check(args: string[]): Promise<{ code: number | null; out: string }> {
  const p = run('rport-watchdog', ['check', ...args]);
  const e = await p.exited;
  return { code: e.code, out: p.output };
}

test('check: exit 0 healthy, 1 stale, 3 missing or corrupt or integration off; one line or --json', async (t) => {
  const dir = tmpDir(t);
  const now = Math.floor(Date.now() / 1000);
  const fresh = writeFile(
    dir,
    'fresh.json',
    JSON.stringify({
      last_update_ts: now,
      last_state: 'connected',
      last_message: 'ping to s:1 succeeded within 1ms',
      pid: 1,
      next_update_by_ts: now + 60,
    }),
  );
  const stale = writeFile(
    dir,
    'stale.json',
    JSON.stringify({
      last_update_ts: now - 400,
      last_state: 'reconnecting',
      last_message: 'Retrying in 5m0s...',
      pid: 1,
      next_update_by_ts: now - 60,
    }),
  );
  const corrupt = writeFile(dir, 'corrupt.json', '{"last_update_ts": 17');
  const rportOnly = writeFile(
    dir,
    'rport.json',
    JSON.stringify({ last_update: 'x', last_update_ts: now - 100, last_state: 'connected', last_message: '' }),
  );

  let r = await check(['--state', fresh]);
  assert.equal(r.code, 0);
  assert.match(
    r.out,
    /^healthy: last update \d+s ago \(connected: ping to s:1 succeeded within 1ms\); next update due within \d+s$/,
  );
  r = await check(['--state', stale]);
  assert.equal(r.code, 1);
  assert.match(
    r.out,
    /^hung: last update 40\ds ago \(reconnecting: Retrying in 5m0s\.\.\.\); it promised to write again by 6\ds ago \(grace 10s\)$/,
  );
  r = await check(['--state', join(dir, 'nothing.json')]);
  assert.equal(r.code, 3);
  assert.match(r.out, /^unknown: state\.json does not exist/);
  r = await check(['--state', corrupt, '--json']);
  assert.equal(r.code, 3);
  assert.deepEqual(JSON.parse(r.out), {
    status: 'unknown',
    reason: 'state.json is not valid JSON',
    state_file: corrupt,
    age_sec: null,
    state: null,
    pid: null,
  });
  r = await check(['--state', rportOnly, '--threshold', '1m']);
  assert.equal(r.code, 1, 'RPort-style file older than --threshold');
  r = await check(['--state', rportOnly]);
  assert.equal(r.code, 3, 'no next_update_by and nothing to derive a threshold from');

  // With rport.conf: the budget for RPort-style files, and watchdog_integration off means "unknown".
  const conf = writeFile(
    dir,
    'rport.conf',
    `[client]\nserver = "x:1"\nauth = "a:b"\ndata_dir = "${dir}"\n[connection]\nwatchdog_integration = true\nkeep_alive = "1m"\nmax_retry_interval = "1m"\n`,
  );
  writeFile(dir, 'state.json', JSON.stringify({ last_update_ts: now - 100, last_state: 'connected' }));
  r = await check(['-c', conf]);
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /older than the 91s that keep_alive and max_retry_interval allow/);
  const off = writeFile(dir, 'off.conf', `[client]\nserver = "x:1"\nauth = "a:b"\ndata_dir = "${dir}"\n`);
  r = await check(['-c', off]);
  assert.equal(r.code, 3);
  assert.match(
    r.out,
    /^unknown: watchdog_integration is off in .*off\.conf: the client writes no state\.json \(set \[connection\] watchdog_integration = true\)$/,
  );
  const usage = run('rport-watchdog', ['check']);
  assert.equal((await usage.exited).code, 2);
  assert.equal(
    usage.output,
    'say which client to watch: -c /etc/rport/rport.conf or --state /var/lib/rport/state.json',
  );
});

test('run: two hung checks restart a frozen client through --restart-cmd; the rate limit holds', async (t) => {
  const server = await startServer(t);
  const dir = tmpDir(t);
  const client = startClient(t, `127.0.0.1:${server.port}`, [
    '--watchdog-integration',
    '--watchdog-interval',
    '300ms',
    '--data-dir',
    dir,
  ]);
  cleanup(t, () => client.kill('SIGCONT'));
  await eventually(() => (existsSync(join(dir, 'state.json')) ? true : undefined));
  const marker = join(dir, 'restarts.txt');
  // "Restarting" here thaws the frozen client, so it turns healthy again, as a real restart would.
  const sup = run('rport-watchdog', [
    'run',
    '--state',
    join(dir, 'state.json'),
    '--interval',
    '500ms',
    '--grace',
    '1s',
    '--max-restarts',
    '2',
    '--restart-cmd',
    `echo "$RPORT_PID" >> ${marker}; kill -CONT "$RPORT_PID"`,
    '--log-file',
    join(dir, 'wd.log'),
  ]);
  cleanup(t, () => sup.stop());
  const log = () => (existsSync(join(dir, 'wd.log')) ? readFileSync(join(dir, 'wd.log'), 'utf8') : '');
  await eventually(() => (/healthy: /.test(log()) ? true : undefined), 5000, 'a healthy verdict');
  const restarts = () => (existsSync(marker) ? readFileSync(marker, 'utf8').trim().split('\n') : []);

  client.kill('SIGSTOP');
  await eventually(() => (restarts().length === 1 ? true : undefined), 10_000, 'first restart');
  assert.deepEqual(restarts(), [String(client.pid)]);
  assert.match(log(), /WARN {2}rport-watchdog: hung \(strike 1 of 2\)/);
  assert.match(log(), /ERROR rport-watchdog: hung \(strike 2 of 2\): .*; restarting the client: echo/);
  const firstHung = log().indexOf('strike 1 of 2');
  assert.ok(firstHung >= 0 && firstHung < log().indexOf('restarting the client'), 'a restart only after two strikes');
  await eventually(
    () => (/healthy: /.test(log().slice(log().lastIndexOf('restart command succeeded'))) ? true : undefined),
    8000,
    'healthy after the restart',
  );

  client.kill('SIGSTOP');
  await eventually(() => (restarts().length === 2 ? true : undefined), 15_000, 'second restart');
  client.kill('SIGSTOP');
  await eventually(
    () => (/NOT restarting: 2 restarts in the last hour reached --max-restarts 2/.test(log()) ? true : undefined),
    15_000,
    'rate limit',
  );
  assert.equal(restarts().length, 2);
  // The pause after a restart (1 s after the first) holds: the second came no sooner than that.
  const restartTimes = log()
    .split('\n')
    .filter((l) => l.includes('restarting the client'))
    .map((l) => Date.parse(l.slice(0, 23).replace(' ', 'T')));
  assert.equal(restartTimes.length, 2);
  assert.ok(restartTimes[1]! - restartTimes[0]! >= 1000, `restarts ${restartTimes[1]! - restartTimes[0]!} ms apart`);
});

test('run never restarts a client that was stopped on purpose', async (t) => {
  const server = await startServer(t);
  const dir = tmpDir(t);
  const client = startClient(t, `127.0.0.1:${server.port}`, [
    '--watchdog-integration',
    '--watchdog-interval',
    '300ms',
    '--data-dir',
    dir,
  ]);
  await eventually(() => (existsSync(join(dir, 'state.json')) ? true : undefined));
  assert.equal((await client.stop()).code, 0);
  const marker = join(dir, 'restarts.txt');
  const args = [
    'run',
    '--once',
    '--state',
    join(dir, 'state.json'),
    '--grace',
    '0s',
    '--threshold',
    '1s',
    '--restart-cmd',
    `echo x >> ${marker}`,
    '--log-file',
    join(dir, 'wd.log'),
  ];
  // The state goes stale when its promise plus --threshold has passed: wait for exactly that, not a guess.
  const { next_update_by_ts: promised } = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as {
    next_update_by_ts: number;
  };
  await new Promise((r) => setTimeout(r, Math.max(0, promised * 1000 + 1000 + 100 - Date.now())));
  for (let i = 0; i < 3; i++) assert.equal((await run('rport-watchdog', args).exited).code, 1);
  assert.equal(existsSync(marker), false);
  assert.match(
    readFileSync(join(dir, 'wd.log'), 'utf8'),
    new RegExp(`but process ${client.pid} is gone: stopped on purpose or crashed, not restarting`),
  );
  // A service manager's word counts too: --running-cmd that says "not meant to run".
  const viaCmd = run('rport-watchdog', [...args, '--running-cmd', 'exit 3']);
  assert.equal((await viaCmd.exited).code, 1);
  assert.match(
    readFileSync(join(dir, 'wd.log'), 'utf8'),
    /but the service is not meant to run \(exit 3 exited 3\): stopped on purpose, not restarting/,
  );
  assert.equal(existsSync(marker), false);
});

test('run: a restart command that hangs is killed after --command-timeout', async (t) => {
  const dir = tmpDir(t);
  const now = Math.floor(Date.now() / 1000);
  // A stale file whose pid is alive (this test), so the client counts as meant to run.
  const state = writeFile(
    dir,
    'state.json',
    JSON.stringify({
      last_update_ts: now - 100,
      last_state: 'connected',
      last_message: '',
      pid: process.pid,
      next_update_by_ts: now - 90,
    }),
  );
  const args = [
    'run',
    '--once',
    '--state',
    state,
    '--grace',
    '1s',
    '--restart-cmd',
    'sleep 300',
    '--command-timeout',
    '500ms',
    '--log-file',
    join(dir, 'wd.log'),
  ];
  assert.equal((await run('rport-watchdog', args).exited).code, 1); // strike 1
  const t0 = Date.now();
  assert.equal((await run('rport-watchdog', args).exited).code, 1); // strike 2: restart, which hangs
  // Far sooner than the command would have ended by itself; a busy machine may take seconds to start node.
  assert.ok(Date.now() - t0 < 60_000, `took ${Date.now() - t0}ms`);
  assert.match(
    readFileSync(join(dir, 'wd.log'), 'utf8'),
    /ERROR rport-watchdog: restart command timed out after 500ms/,
  );
});

test('install writes a cron entry that runs the check every 5 minutes; uninstall removes it; --print only shows', async (t) => {
  const dir = tmpDir(t);
  const cron = join(dir, 'rport-watchdog');
  const conf = writeFile(dir, 'rport.conf', '[client]\nserver = "x:1"\n');
  const p = run('rport-watchdog', ['install', '-c', conf, '--cron-file', cron]);
  assert.equal((await p.exited).code, 0, p.output);
  const text = readFileSync(cron, 'utf8');
  assert.match(
    text,
    new RegExp(
      `^\\*/5 \\* \\* \\* \\* root ${process.execPath.replace(/\//g, '\\/')} \\S+/rport-watchdog\\.js run --once -c ${conf.replace(/\//g, '\\/')} >/dev/null 2>&1$`,
      'm',
    ),
  );
  assert.match(text, /^@reboot root sleep 300 && /m);
  const printed = run('rport-watchdog', ['uninstall', '--print', '--cron-file', cron]);
  assert.equal((await printed.exited).code, 0);
  assert.equal(printed.output, `would remove ${cron}`);
  assert.ok(existsSync(cron));
  const u = run('rport-watchdog', ['uninstall', '--cron-file', cron]);
  assert.equal((await u.exited).code, 0);
  assert.equal(existsSync(cron), false);
  const noConf = run('rport-watchdog', ['install']);
  assert.equal((await noConf.exited).code, 2);
});
