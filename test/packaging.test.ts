import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CLIENT_KEYS } from '../src/config/client-config.js';
import { loadConfig, type KeyDef } from '../src/config/loader.js';
import { SERVER_KEYS } from '../src/config/server-config.js';
import { STRIKES_TO_RESTART } from '../src/supervisor/supervisor.js';
import { WATCHDOG_OPTIONS } from '../src/supervisor/options.js';
import { heartbeatBudget } from '../src/watchdog/budget.js';
import { tmpDir } from '../harness/procs.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const read = (p: string) => readFileSync(join(ROOT, p), 'utf8');
const def = (defs: KeyDef[], section: string, key: string) =>
  defs.find((d) => d.section === section && d.key === key)!.default as number;

test('rport.service: Type=notify, Restart=always, User=rport, and WatchdogSec above the default config budget', () => {
  const unit = read('packaging/systemd/rport.service');
  for (const line of [
    'Type=notify',
    'NotifyAccess=main',
    'Restart=always',
    'User=rport',
    'NoNewPrivileges=yes',
    'ProtectSystem=strict',
  ]) {
    assert.match(unit, new RegExp(`^${line}$`, 'm'));
  }
  const wd = Number(/^WatchdogSec=(\d+)$/m.exec(unit)![1]);
  const budget = heartbeatBudget({
    keepAliveMs: def(CLIENT_KEYS, 'connection', 'keep_alive'),
    keepAliveTimeoutMs: def(CLIENT_KEYS, 'connection', 'keep_alive_timeout'),
    maxRetryIntervalMs: def(CLIENT_KEYS, 'connection', 'max_retry_interval'),
    connectTimeoutMs: def(CLIENT_KEYS, 'connection', 'connect_timeout'),
  });
  assert.ok(wd * 1000 > budget.maxMs, `WatchdogSec=${wd} must exceed the default budget ${budget.maxMs}ms`);
});

test('each unit may write where its shipped config puts data and logs: data_dir is /var/lib/ of StateDirectory=, the suggested log_file is in /var/log/ of LogsDirectory= (ProtectSystem=strict leaves only those writable)', () => {
  for (const [pkg, defs, section] of [
    ['rport', CLIENT_KEYS, 'client'],
    ['rportd', SERVER_KEYS, 'server'],
  ] as const) {
    const unit = read(`packaging/systemd/${pkg}.service`);
    const dir = (directive: string) =>
      /^(\S+)$/.exec(new RegExp(`^${directive}=(.*)$`, 'm').exec(unit)?.[1] ?? '')?.[1];
    assert.match(unit, /^ProtectSystem=strict$/m);
    const dataDir = loadConfig(defs, join(ROOT, `packaging/conf/${pkg}.conf`), new Map()).get<string>(
      section,
      'data_dir',
    );
    assert.equal(
      dataDir,
      `/var/lib/${dir('StateDirectory')}`,
      `packaging/conf/${pkg}.conf's data_dir and ${pkg}.service's StateDirectory=`,
    );
    const logFile = /^ *#?log_file = "(.*)"$/m.exec(read(`packaging/conf/${pkg}.conf`))?.[1];
    assert.equal(
      dirname(logFile ?? ''),
      `/var/log/${dir('LogsDirectory')}`,
      `packaging/conf/${pkg}.conf's log_file and ${pkg}.service's LogsDirectory=`,
    );
    assert.doesNotMatch(unit, /^ReadWritePaths=/m, 'no other writable folder');
  }
});

test(
  'the systemd units pass systemd-analyze verify',
  { skip: !existsSync('/usr/bin/systemd-analyze') && 'systemd-analyze is not installed' },
  (t) => {
    const dir = tmpDir(t);
    for (const name of ['rport.service', 'rportd.service']) {
      // The binaries are not installed here; point ExecStart at one that exists so only the unit is judged.
      writeFileSync(join(dir, name), read(`packaging/systemd/${name}`).replace(/\/usr\/bin\/rportd?/g, '/bin/true'));
    }
    const r = spawnSync('systemd-analyze', ['verify', join(dir, 'rport.service'), join(dir, 'rportd.service')], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', 'no warnings (unknown keys, bad values)');
    // And it would catch a mistake:
    writeFileSync(join(dir, 'bad.service'), '[Service]\nExecStart=/bin/true\nWatchdogSecs=3\n');
    assert.match(
      spawnSync('systemd-analyze', ['verify', join(dir, 'bad.service')], { encoding: 'utf8' }).stderr,
      /Unknown key '?WatchdogSecs'?/,
    );
  },
);

test('the PowerShell watchdog keeps rport-watchdog rules and says it was not run here', () => {
  const ps = read('packaging/windows/rport-watchdog.ps1');
  assert.match(ps, /has NOT been run by the project's tests/);
  for (const sw of ['-Register', '-Unregister', '-State', '-Threshold', '-TestCases'])
    assert.ok(
      ps.includes(`[switch]$${sw.slice(1)}`) ||
        ps.includes(`$${sw.slice(1)} =`) ||
        ps.includes(`[int]$${sw.slice(1)}`) ||
        ps.includes(`[string]$${sw.slice(1)}`),
      sw,
    );
  assert.match(ps, new RegExp(`\\$StrikesToRestart = ${STRIKES_TO_RESTART}$`, 'm'));
  assert.match(ps, new RegExp(`\\[int\\]\\$Grace = ${def(WATCHDOG_OPTIONS, 'watchdog', 'grace') / 1000},`));
  assert.match(ps, /\[int\]\$MaxRestartsPerHour = 3,/);
  assert.equal(def(WATCHDOG_OPTIONS, 'watchdog', 'max_restarts'), 3);
  assert.match(ps, /\$TaskName = 'RPort-Watchdog'/);
  assert.match(ps, /Write-EventLog -LogName Application -Source \$EventSource/);
  // The same reasons, word for word, as verdict.ts, so both read alike in logs.
  const ts = read('src/supervisor/verdict.ts');
  for (const phrase of [
    'state.json does not exist: is watchdog_integration on and has the client ever started?',
    'state.json is not valid JSON',
    'state.json has no numeric last_update_ts',
    'that keep_alive and max_retry_interval allow',
    'it promised to write again by',
  ]) {
    assert.ok(ts.includes(phrase) && ps.includes(phrase), phrase);
  }
});

test('test tiers: unit, integration and system together are every test file, once; a file in no tier runs with integration and is named; a stale entry stops the run', (t) => {
  const runner = (...args: string[]) =>
    spawnSync(process.execPath, [join(ROOT, 'scripts/test.mjs'), ...args], { encoding: 'utf8', timeout: 30_000 });
  const list = (...args: string[]) =>
    runner(...args, '--list')
      .stdout.trim()
      .split('\n')
      .map((f) => f.split('/').pop()!);
  const built = readdirSync(join(ROOT, 'dist/test'))
    .filter((f) => f.endsWith('.test.js'))
    .sort();
  const tiers = ['unit', 'integration', 'system'].map((n) => list(n));
  assert.deepEqual(tiers.flat().sort(), built, 'each file in exactly one tier');
  assert.deepEqual(list('all').sort(), built, 'npm test runs them all');
  assert.equal(list('integration')[0], 'connection.test.js', 'the longest file starts first');
  assert.ok(tiers[0]!.includes('units.test.js') && tiers[2]!.includes('deb-install.test.js'));

  const dir = tmpDir(t);
  for (const f of [...built, 'new-thing.test.js']) writeFileSync(join(dir, f), '');
  const added = runner('integration', '--list', '--dir', dir);
  assert.equal(added.status, 0);
  assert.match(added.stdout, /new-thing\.test\.js/);
  assert.equal(
    added.stderr,
    'scripts/test.mjs: test/new-thing.test.ts in no tier: run with integration; add to TIERS in scripts/test.mjs\n',
  );
  assert.doesNotMatch(runner('unit', '--list', '--dir', dir).stdout, /new-thing/);
  rmSync(join(dir, 'units.test.js'));
  const stale = runner('unit', '--list', '--dir', dir);
  assert.equal(stale.status, 2);
  assert.match(stale.stderr, /test\/units\.test\.ts listed in TIERS but not found: remove it from scripts\/test\.mjs/);
});

test("package.json's engines and the README take the Node the release embeds (NODE_LTS)", () => {
  const lts = /^export const NODE_LTS = '(\d+)\.(\d+)\.(\d+)';$/m
    .exec(read('scripts/release/node-lts.mjs'))!
    .slice(1)
    .map(Number);
  const engines = (JSON.parse(read('package.json')) as { engines: { node: string } }).engines.node;
  const atLeast = (v: number[]) => lts[0]! - v[0]! || lts[1]! - v[1]! || lts[2]! - v[2]!;
  // The two forms engines uses: ">=X.Y.Z" and "^X.Y.Z".
  const takes = engines
    .split('||')
    .map((r) => r.trim())
    .some((range) => {
      const m = /^(>=|\^)(\d+)\.(\d+)\.(\d+)$/.exec(range);
      assert.ok(m, `package.json engines.node: "${range}" is not of the form >=X.Y.Z or ^X.Y.Z`);
      const v = m.slice(2).map(Number);
      return atLeast(v) >= 0 && (m[1] === '>=' || v[0] === lts[0]);
    });
  assert.ok(takes, `package.json engines.node "${engines}" does not take Node ${lts.join('.')}, the release's`);
  assert.match(read('README.md'), new RegExp(`^Node\\.js ${lts[0]} \\(the LTS the release executables embed`, 'm'));
  assert.match(read('docs/install.md'), new RegExp(`^Node \\*\\*${lts[0]}\\*\\* \\(\`NODE_LTS\``, 'm'));
});
