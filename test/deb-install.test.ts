import assert from 'node:assert/strict';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  readdirSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { cleanup, eventually, freePort, tmpDir, CLIENT_AUTH } from '../harness/procs.js';
import { inPrivateRoot, privateRootUnavailable, runInPrivateRoot } from './helpers/private-root.js';
import { systemdUnavailable, UserSystemd } from '../harness/systemd.js';

/**
 * The release's .deb packages installed for real: dpkg -i, the installed units run as shipped by a real
 * systemd (the test harness's), dpkg -r and --purge. All of it in a private root (helpers/private-root.ts):
 * this file runs itself again there, where "/" is a throwaway overlay of the host's, so the packages, the
 * rport system user, /etc/rport and the rest never reach the host; the test then checks they did not.
 * Needs root and the release's packages (`npm run release`, which .ci/run runs first); skips without.
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const DEBS = ['rport', 'rportd'].map((p) => join(ROOT, 'release', `${p}_${VERSION}_amd64.deb`));
const exec = promisify(execFile);

function installed(pkg: string): boolean {
  return spawnSync('dpkg-query', ['-W', '-f', '${Status}', pkg], { encoding: 'utf8' }).stdout.includes(
    'install ok installed',
  );
}

const getent = (user: string) => spawnSync('getent', ['passwd', user]).status === 0;
/** Where `systemctl enable` links the units (their [Install] WantedBy=multi-user.target). */
const WANTS = '/etc/systemd/system/multi-user.target.wants';

function whySkip(noPrivateRoot: string | undefined): string | undefined {
  if (process.platform !== 'linux' || process.arch !== 'x64') return 'the amd64 packages install on linux-x64 only';
  const sd = systemdUnavailable();
  if (sd) return `a real systemd is not available: ${sd}`;
  for (const tool of ['/usr/bin/dpkg', '/usr/bin/dpkg-deb', '/usr/sbin/adduser', '/usr/sbin/deluser'])
    if (!existsSync(tool)) return `${tool} is missing`;
  for (const pkg of ['rport', 'rportd'])
    if (installed(pkg)) return `the ${pkg} package is already installed on this machine: not testing over it`;
  const missing = DEBS.find((d) => !existsSync(d));
  if (missing) return `${missing} not found: build the release first (npm run release -- linux-x64)`;
  return noPrivateRoot;
}

const isLink = (p: string) => {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
};

/** Processes whose executable is one of the packages' (also after dpkg removed the file). */
function packageProcesses(): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const exe = readlinkSync(`/proc/${pid}/exe`);
      if (/^\/usr\/lib\/rportd?\/rportd?( \(deleted\))?$/.test(exe)) found.push(`${pid} ${exe}`);
    } catch {
      // gone, or a kernel thread
    }
  }
  return found;
}

/**
 * A drop-in for the installed unit with only what the harness needs: it loads only the test's units (no
 * basic.target to depend on) and has no journal (output to a file). No write access is added and no
 * sandboxing taken away (but what this machine cannot set up): User=, the StateDirectory= (/var/lib/NAME,
 * see UserSystemd's configHome), PrivateTmp= and the rest of the hardening are the installed file's.
 */
function dropIn(log: string, extra: string, unsupported: string[]): string {
  return `[Unit]
DefaultDependencies=no
[Service]
StandardOutput=append:${log}
StandardError=append:${log}
${unsupported.map((d) => `${d}=no`).join('\n')}
${extra}`;
}

/**
 * The sandboxing directives of a unit that this machine cannot set up (a container may refuse some
 * mounts: the service then fails with 226/NAMESPACE before it runs), each tried on /bin/true.
 */
async function unsupportedSandboxing(sd: UserSystemd, unitText: string): Promise<string[]> {
  const out: string[] = [];
  for (const [, directive] of unitText.matchAll(/^((?:Protect|Private)\w+)=yes$/gm)) {
    sd.writeUnit(
      'probe.service',
      `[Unit]\nDefaultDependencies=no\n[Service]\nType=oneshot\nExecStart=/bin/true\n${directive}=yes\n`,
    );
    await sd.systemctl('daemon-reload');
    if (
      await sd.systemctl('start', 'probe.service').then(
        () => false,
        () => true,
      )
    )
      out.push(directive!);
  }
  return out;
}

/** What the test does in the private root: everything it checks about the packages. */
async function install(t: TestContext): Promise<void> {
  const dpkg = spawnSync('dpkg', ['-i', ...DEBS], { encoding: 'utf8', timeout: 300_000 });
  assert.equal(dpkg.status, 0, dpkg.stderr);
  // No systemd as PID 1 here: each package says what to do next, naming commands that exist.
  t.diagnostic(dpkg.stderr);
  assert.match(
    dpkg.stderr,
    /^rport: next: rport init --server HOST:PORT --fingerprint SHA256:\.\.\. --auth ID:PASSWORD --force \(writes \/etc\/rport\/rport\.conf\), then start rport \(no systemd running here: /m,
  );
  assert.match(
    dpkg.stderr,
    /^rportd: next: set auth in \/etc\/rport\/rportd\.conf \(every key: rportd --help\), then start rportd \(no systemd running here: /m,
  );
  assert.doesNotMatch(dpkg.stderr, /rportd init/);

  // What the packages put in place.
  assert.equal(execFileSync('/usr/bin/rport', ['--version'], { encoding: 'utf8' }).trim(), `rport ${VERSION}`);
  assert.equal(execFileSync('/usr/bin/rportd', ['--version'], { encoding: 'utf8' }).trim(), `rportd ${VERSION}`);
  assert.equal(
    execFileSync('/usr/bin/rport-watchdog', ['--version'], { encoding: 'utf8' }).trim(),
    `rport-watchdog ${VERSION}`,
  );
  // One executable: the watchdog is rport called by that name.
  assert.deepEqual(
    ['rport', 'rport-watchdog'].map((c) => readlinkSync(`/usr/bin/${c}`)),
    ['../lib/rport/rport', '../lib/rport/rport'],
  );
  assert.ok(!existsSync('/usr/lib/rport/rport-watchdog'));
  const uid = Number(execFileSync('id', ['-u', 'rport'], { encoding: 'utf8' }));
  const gid = Number(execFileSync('id', ['-g', 'rport'], { encoding: 'utf8' }));
  const owned = (p: string) => {
    const st = statSync(p);
    return `${st.uid === uid ? 'rport' : st.uid}:${st.gid === gid ? 'rport' : st.gid} ${(st.mode & 0o777).toString(8)}`;
  };
  assert.equal(owned('/var/lib/rport'), 'rport:rport 755');
  assert.equal(owned('/var/lib/rportd'), 'rport:rport 700');
  assert.equal(owned('/var/log/rport'), 'rport:rport 750');
  assert.equal(owned('/etc/rport/rport.conf'), '0:rport 640');
  assert.match(
    execFileSync('dpkg-query', ['-W', '-f', '${Conffiles}', 'rport'], { encoding: 'utf8' }),
    /\/etc\/rport\/rport\.conf [0-9a-f]{32}/,
  );
  for (const f of [
    '/lib/systemd/system/rport.service',
    '/lib/systemd/system/rportd.service',
    '/usr/lib/rport/sd_notify.node',
    '/usr/lib/rport/sshcrypto.node',
  ])
    assert.ok(existsSync(f), f);

  // rportd from its installed unit, configured as an operator would.
  const dir = tmpDir(t);
  const port = await freePort();
  // The shipped file with three lines changed; its data_dir is the package's.
  const shipped = readFileSync('/etc/rport/rportd.conf', 'utf8');
  const conf = shipped
    .replace(/^ {2}address = "0\.0\.0\.0:8080"$/m, `  address = "127.0.0.1:${port}"`)
    .replace(/^ {2}#auth = .*$/m, `  auth = "${CLIENT_AUTH}"`)
    .replace(/^ {2}address = "127\.0\.0\.1:3000"$/m, '  address = ""');
  assert.equal(
    conf.split('\n').filter((l, i) => l !== shipped.split('\n')[i]).length,
    3,
    'the shipped rportd.conf has the lines an operator edits',
  );
  writeFileSync('/etc/rport/rportd.conf', conf);
  // As an admin would (README); without systemd running, systemctl links the units all the same.
  execFileSync('systemctl', ['enable', 'rport.service', 'rportd.service'], { stdio: 'ignore', timeout: 30_000 });
  assert.ok(existsSync(join(WANTS, 'rport.service')) && existsSync(join(WANTS, 'rportd.service')), 'enabled');
  // Its notify socket outside /var/tmp, which the units' PrivateTmp= replaces.
  const sd = await UserSystemd.start((fn) => cleanup(t, fn), { configHome: '/var/lib', parent: '/var/lib' });
  const units = join(sd.dir, 'units');
  // The rport user must reach the harness's notify socket, as it reaches the system manager's
  // /run/systemd/notify (srwxrwxrwx); a user manager's is its user's alone.
  for (const d of [sd.dir, join(sd.dir, 'runtime')]) chmodSync(d, 0o711);
  chmodSync(join(sd.dir, 'runtime/systemd/notify'), 0o777);
  const serverLog = join(dir, 'rportd.log');
  const clientLog = join(dir, 'rport.log');
  for (const [pkg, log, extra] of [
    ['rportd', serverLog, ''],
    // WatchdogSec=330 would make the freeze below take 5 1/2 minutes.
    ['rport', clientLog, 'WatchdogSec=3\nRestartSec=100ms\n'],
  ] as const) {
    const text = readFileSync(`/lib/systemd/system/${pkg}.service`, 'utf8');
    const unsupported = await unsupportedSandboxing(sd, text);
    if (unsupported.length)
      t.diagnostic(
        `${pkg}.service: this machine cannot set up ${unsupported.join(', ')} (226/NAMESPACE on /bin/true): turned off in the drop-in`,
      );
    sd.writeUnit(`${pkg}.service`, text);
    mkdirSync(join(units, `${pkg}.service.d`));
    writeFileSync(join(units, `${pkg}.service.d`, 'harness.conf'), dropIn(log, extra, unsupported));
  }
  await sd.systemctl('daemon-reload');
  /** Starts a unit; a failure shows systemd's status and the service's log, not just the exit code. */
  const start = async (unit: string, log: string) => {
    await sd.systemctl('start', unit).catch(async (err: Error) => {
      const status = await exec('systemctl', ['--user', 'status', '--no-pager', unit], { env: sd.env }).then(
        (r) => r.stdout,
        (e: { stdout?: string }) => e.stdout ?? '',
      );
      throw new Error(`${err.message}\n${status}\n${existsSync(log) ? readFileSync(log, 'utf8') : '(no log)'}`);
    });
  };
  await start('rportd.service', serverLog);
  const serverText = () => (existsSync(serverLog) ? readFileSync(serverLog, 'utf8') : '');
  const fingerprint = await eventually(
    () => /host key fingerprint (SHA256:\S+)/.exec(serverText())?.[1],
    10_000,
    'rportd logs its fingerprint',
  ).catch((err: Error) => {
    throw new Error(`${err.message}; its log:\n${serverText()}`);
  });
  assert.ok(existsSync('/var/lib/rportd/rportd.db'), "the registry in the package's data folder");

  // The client configured in one line by the installed rport, then started by its installed unit.
  const init = await exec('/usr/bin/rport', [
    'init',
    '--force',
    '--server',
    `127.0.0.1:${port}`,
    '--fingerprint',
    fingerprint,
    '--auth',
    CLIENT_AUTH,
    '--id',
    'deb-client',
    '--log-level',
    'debug',
  ]);
  assert.match(init.stdout, /wrote \/etc\/rport\/rport\.conf/);
  const written = readFileSync('/etc/rport/rport.conf', 'utf8');
  assert.match(
    written,
    /^ {2}## rportd to connect to: .*\n {2}server = "127\.0\.0\.1:\d+"$/m,
    'the packaged template, commented, with the values set',
  );
  assert.match(written, /^ {2}#proxy = ""$/m);
  assert.equal(owned('/etc/rport/rport.conf'), '0:rport 640', 'the service user can still read it; others cannot');
  await start('rport.service', clientLog); // returns on READY=1
  await eventually(
    async () =>
      /^connected to 127\.0\.0\.1:\d+ within/.test(await sd.show('rport.service', 'StatusText')) ? true : undefined,
    15_000,
    'the installed client connected',
  );
  const state = await eventually(
    () =>
      existsSync('/var/lib/rport/state.json')
        ? JSON.parse(readFileSync('/var/lib/rport/state.json', 'utf8'))
        : undefined,
    10_000,
    'state.json',
  );
  assert.equal(typeof state.last_update_ts, 'number');
  assert.equal(owned('/var/lib/rport/state.json').split(' ')[0], 'rport:rport', 'written by the rport user');
  const status = await exec('systemctl', ['--user', 'status', '--no-pager', 'rport.service'], { env: sd.env }).then(
    (r) => r.stdout,
  );
  for (const line of status.split('\n')) t.diagnostic(line);
  assert.match(status, /Loaded: loaded \(.*rport\.service/);
  assert.match(status, /Drop-In: .*rport\.service\.d/);
  assert.match(status, /Active: active \(running\)/);
  assert.match(status, /Status: "connected to 127\.0\.0\.1:\d+/);
  assert.match(status, /\/usr\/bin\/rport -c \/etc\/rport\/rport\.conf/);
  assert.match(readFileSync(clientLog, 'utf8'), /Using NOTIFY_SOCKET \S+ for systemd watchdog integration/);
  assert.match(readFileSync(clientLog, 'utf8'), /ssh2 native crypto binding is active/);
  // The installed rport-watchdog finds the packaged config without -c.
  const check = await exec('/usr/bin/rport-watchdog', ['check']);
  assert.match(check.stdout, /^healthy: /);

  // Frozen: systemd's watchdog kills it and Restart=always brings it back, connected again.
  const pid = await sd.show('rport.service', 'MainPID');
  process.kill(Number(pid), 'SIGSTOP');
  await eventually(
    async () => {
      const [newPid, sub] = (
        await sd.systemctl('show', '-p', 'MainPID', '-p', 'SubState', '--value', 'rport.service')
      ).split('\n');
      return newPid !== pid && newPid !== '0' && sub === 'running' ? true : undefined;
    },
    15_000,
    'the frozen client restarted',
  );
  assert.ok(Number(await sd.show('rport.service', 'NRestarts')) >= 1);
  await eventually(
    async () => (/^connected to/.test(await sd.show('rport.service', 'StatusText')) ? true : undefined),
    15_000,
    'connected after the restart',
  );
  assert.ok(packageProcesses().length >= 2, 'rport and rportd run from the packages');

  // dpkg -r while both run: prerm stops them; the conffiles and data stay until --purge.
  const removed = spawnSync('dpkg', ['-r', 'rport', 'rportd'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(removed.status, 0, removed.stderr);
  await eventually(
    () => (packageProcesses().length === 0 ? true : undefined),
    10_000,
    `nothing of the packages left running (${packageProcesses().join(', ')})`,
  );
  for (const f of ['/usr/bin/rport', '/usr/lib/rport', '/usr/bin/rportd', '/lib/systemd/system/rport.service'])
    assert.ok(!existsSync(f), `${f} removed`);
  assert.ok(
    existsSync('/etc/rport/rport.conf') && existsSync('/var/lib/rport/state.json'),
    'dpkg -r keeps config and data',
  );
  const purged = spawnSync('dpkg', ['--purge', 'rport', 'rportd'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(purged.status, 0, purged.stderr);
  for (const f of ['/etc/rport', '/var/lib/rport', '/var/lib/rportd', '/var/log/rport'])
    assert.ok(!existsSync(f), `${f} purged`);
  for (const f of ['rport.service', 'rportd.service'])
    assert.ok(!existsSync(join(WANTS, f)) && !isLink(join(WANTS, f)), `${WANTS}/${f} removed`);
  assert.deepEqual(packageProcesses(), []);
}

/** What of the packages and the harness the host shows: the same before and after the test. */
function hostState() {
  const paths = [
    '/etc/rport',
    '/var/lib/rport',
    '/var/lib/rportd',
    '/var/log/rport',
    '/var/log/rportd',
    '/usr/bin/rport',
    '/usr/bin/rportd',
    '/usr/lib/rport',
    '/lib/systemd/system/rport.service',
    join(WANTS, 'rport.service'),
    join(WANTS, 'rportd.service'),
  ];
  return {
    user: getent('rport'),
    packages: ['rport', 'rportd'].filter(installed),
    paths: paths.filter((p) => existsSync(p) || isLink(p)),
    harness: ['/var/tmp', '/var/lib'].flatMap((d) =>
      readdirSync(d)
        .filter((n) => n.startsWith('rport-systemd-'))
        .map((n) => join(d, n)),
    ),
  };
}

const INSTALL =
  'the .deb packages: dpkg -i, the installed units under a real systemd (connected, state.json, status, frozen -> restarted), dpkg -r and --purge';
if (inPrivateRoot()) {
  test(INSTALL, { timeout: 18 * 60_000 }, install);
} else {
  const noPrivateRoot = privateRootUnavailable();
  test(
    'a private root: writes to /, /etc, /usr and /var/tmp stay in it, /proc is its own, what it leaves running ends with it, NODE_TEST_CONTEXT is not passed on',
    { skip: noPrivateRoot },
    async () => {
      const name = `rport-private-root-probe-${process.pid}`;
      const files = ['/', '/etc', '/usr/bin', '/var/tmp'].map((d) => join(d, name));
      const { code, output } = await runInPrivateRoot(
        [
          'bash',
          '-c',
          `set -e; touch ${files.join(' ')}; ls ${files.join(' ')} >/dev/null; (exec -a ${name} sleep 600) & grep -q pivot_root /proc/1/cmdline && echo "own /proc, context \${NODE_TEST_CONTEXT-unset}"`,
        ],
        {
          timeoutMs: 30_000,
          env: { ...process.env, NODE_TEST_CONTEXT: 'child-v8' },
        },
      );
      assert.equal(code, 0, output);
      assert.match(
        output,
        /^own \/proc, context unset$/m,
        "PID 1 of its /proc is the private root's shell; no NODE_TEST_CONTEXT",
      );
      for (const f of files) assert.ok(!existsSync(f), `${f} is not on the host`);
      const left = readdirSync('/proc').filter(
        (p) =>
          /^\d+$/.test(p) &&
          (() => {
            try {
              return readFileSync(`/proc/${p}/cmdline`, 'utf8').startsWith(`${name}\0`);
            } catch {
              return false;
            }
          })(),
      );
      assert.deepEqual(left, [], 'the process it left running ended with it');
      assert.equal(inPrivateRoot(), false, 'the host has no mark of a private root');
    },
  );

  test(
    `${INSTALL}, in a private root; the host unchanged`,
    { skip: whySkip(noPrivateRoot), timeout: 20 * 60_000 },
    async (t) => {
      const before = hostState();
      const { code, output } = await runInPrivateRoot(
        [process.execPath, '--test-reporter=tap', fileURLToPath(import.meta.url)],
        { timeoutMs: 19 * 60_000 },
      );
      // Its diagnostics (dpkg's lines, systemctl status) as this test's; all of its output when it failed.
      for (const line of output.split('\n'))
        if (code !== 0 || line.startsWith('# ')) t.diagnostic(code !== 0 ? line : line.slice(2));
      assert.equal(
        code,
        0,
        `the run in the private root failed (its output is above):\n${output.split('\n').slice(-40).join('\n')}`,
      );
      assert.match(output, /^# pass 1$/m, 'the test ran in the private root');
      assert.deepEqual(hostState(), before, 'nothing of the packages or the harness on the host');
    },
  );
}
