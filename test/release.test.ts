import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import bcrypt from 'bcryptjs';
import { CLIENT_KEYS, clientConfig } from '../src/config/client-config.js';
import { loadConfig } from '../src/config/loader.js';
import { serviceSteps, wrapperXml } from '../src/service/windows.js';
import { cleanup, CLI_DIR, CLIENT_AUTH, freePort, Proc, startServer, tmpDir, writeFile } from '../harness/procs.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const BUILT = join(ROOT, 'release-build', 'bin', 'linux-x64');
const notBuilt =
  process.platform === 'linux' && process.arch === 'x64'
    ? !existsSync(join(BUILT, 'rport')) &&
      'release-build/bin/linux-x64 is not built: run npm run release (CI does, before the tests)'
    : 'the linux-x64 executables run on linux-x64 only';

function init(args: string[]) {
  return spawnSync(process.execPath, [join(CLI_DIR, 'rport.js'), ...args], { encoding: 'utf8', timeout: 10_000 });
}

test('rport init writes a starter rport.conf (0600) that rport accepts, refuses to overwrite without --force', (t) => {
  const dir = tmpDir(t);
  const file = join(dir, 'etc', 'rport.conf');
  const ok = init([
    'init',
    '-c',
    file,
    '--server',
    'rport.example.com:8080',
    '--fingerprint',
    'SHA256:Wmpb3EJYITm3qhV6xrVOhPDZ4kQwnHFju0Un5kxKLeQ',
    '--auth',
    'c1:pa"ss',
    '--keep-alive',
    '1m',
    '--tags',
    'a',
    '--tags',
    'b',
  ]);
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(ok.stdout, `wrote ${file}\n`);
  assert.equal(statSync(file).mode & 0o777, 0o600, 'it holds the password');
  const cfg = clientConfig(loadConfig(CLIENT_KEYS, file, new Map()));
  assert.equal(cfg.servers[0]!.href, 'ws://rport.example.com:8080/');
  assert.deepEqual([cfg.keepAliveMs, cfg.watchdogIntegration, cfg.tags], [60_000, true, ['a', 'b']]);
  assert.match(readFileSync(file, 'utf8'), /^ {2}auth = "c1:pa\\"ss"$/m, 'quoted as TOML');
  assert.match(readFileSync(file, 'utf8'), /^ {2}keep_alive = "1m"$/m, 'durations as given');
  assert.match(
    readFileSync(file, 'utf8'),
    /^ {2}tags = \[ "a", "b" \]$/m,
    'in [client], where the template has it commented',
  );

  const before = readFileSync(file, 'utf8');
  const again = init(['--init', '-c', file, '--server', 'other:1', '--auth', 'x:y']);
  assert.equal(again.status, 2);
  assert.equal(again.stderr, `${file} exists: not overwriting it (add --force to replace it)\n`);
  assert.equal(readFileSync(file, 'utf8'), before);

  chmodSync(file, 0o644);
  const forced = init(['init', '--force', '-c', file, '--server', 'other:1', '--auth', 'x:y']);
  assert.equal(forced.status, 0, forced.stderr);
  // The package's commented template with the values set, not a bare list of keys.
  const template = readFileSync(join(ROOT, 'packaging/conf/rport.conf'), 'utf8');
  const written = readFileSync(file, 'utf8');
  assert.match(written, /^ {2}## rportd to connect to: .*\n {2}server = "other:1"$/m);
  assert.match(written, /^ {2}auth = "x:y"$/m);
  assert.equal(written.split('\n').length, template.split('\n').length, 'every line of the template, none added');
  const changed = written.split('\n').filter((l, i) => l !== template.split('\n')[i]);
  assert.deepEqual(changed, ['  server = "other:1"', '  auth = "x:y"']);
  assert.equal(statSync(file).mode & 0o777, 0o640, "kept its group access, lost the world's");
});

test('rport init: bad or missing flags exit 2 with one line and write nothing', (t) => {
  const dir = tmpDir(t);
  const file = join(dir, 'rport.conf');
  for (const [args, line] of [
    [
      ['--server', 'a b', '--auth', 'c:p'],
      '--server "a b" has "a b", which is not host:port, ws://host:port/ or wss://host:port/',
    ],
    [
      ['--server', 'h:1'],
      '[client] auth is not set (use e.g. auth = "client1:secret", or the environment variable RPORT_AUTH)',
    ],
    [['--server', 'h:1', '--auth', 'c:p', '--keep-alive', 'often'], /^--keep-alive "often" /],
    [['--server', 'h:1', '--auth', 'c:p', '--bogus', '1'], 'unknown option --bogus (see --help)'],
  ] as const) {
    const r = init(['init', '-c', file, ...args]);
    assert.equal(r.status, 2, args.join(' '));
    assert.equal(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
    if (typeof line === 'string') assert.equal(r.stderr.trim(), line);
    else assert.match(r.stderr, line);
    assert.ok(!existsSync(file));
  }
});

/** A release executable with its output captured and stopped at the end of the test. */
function runBuilt(t: TestContext, exe: string, args: string[], env: NodeJS.ProcessEnv = {}): Proc {
  const proc = new Proc(
    spawn(exe, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NOTIFY_SOCKET: '', ...env } }),
  );
  cleanup(t, () => proc.stop());
  return proc;
}

test(
  'release/ holds only what ships: the packages, the tarballs and SHA256SUMS',
  { skip: !existsSync(join(ROOT, 'release', 'SHA256SUMS')) && 'release/ is not built: run npm run release' },
  () => {
    const files = readdirSync(join(ROOT, 'release'));
    assert.deepEqual(
      files.filter(
        (f) =>
          !/^(rportd?_\d+\.\d+\.\d+_(amd64|arm64)\.deb|rportd?-\d+\.\d+\.\d+-(linux-x64|linux-arm64|win-x64)\.tar\.gz|SHA256SUMS)$/.test(
            f,
          ),
      ),
      [],
    );
    const sums = readFileSync(join(ROOT, 'release', 'SHA256SUMS'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split('  ')[1]);
    assert.deepEqual(sums, files.filter((f) => f !== 'SHA256SUMS').sort(), 'each file in SHA256SUMS');
  },
);

test(
  'release executables embed a supported LTS Node (NODE_LTS, 24 or 26), whatever Node built them, and start it with --no-incremental-marking',
  { skip: notBuilt },
  (t) => {
    const lts = /^export const NODE_LTS = '(\d+\.\d+\.\d+)';$/m.exec(
      readFileSync(join(ROOT, 'scripts/release/node-lts.mjs'), 'utf8'),
    )![1]!;
    assert.match(lts, /^(24|26)\./);
    // A single executable still reads NODE_OPTIONS (execArgvExtension "env"): a preload prints what the
    // runtime itself was started with, before any of the executable's code runs. Its flags are not in execArgv.
    const dir = tmpDir(t);
    const probe = writeFile(
      dir,
      'probe.cjs',
      'process.stdout.write(JSON.stringify({ version: process.version, execArgv: process.execArgv })); process.exit(0);',
    );
    for (const c of ['rport', 'rportd', 'rport-watchdog']) {
      const r = spawnSync(join(BUILT, c), ['--version'], {
        encoding: 'utf8',
        env: { ...process.env, XDG_CACHE_HOME: dir, NODE_OPTIONS: `--require=${probe}` },
        timeout: 30_000,
      });
      assert.deepEqual(JSON.parse(r.stdout), { version: `v${lts}`, execArgv: ['--no-incremental-marking'] }, c);
      // The main script runs too: its code cache was made under the same flags, or Node warns "Code cache data rejected".
      const plain = spawnSync(join(BUILT, c), ['--version'], {
        encoding: 'utf8',
        env: { ...process.env, XDG_CACHE_HOME: dir },
        timeout: 30_000,
      });
      assert.deepEqual([plain.status, plain.stdout, plain.stderr], [0, `${c} ${VERSION}\n`, ''], c);
    }
  },
);

test('rport watchdog is rport-watchdog: the subcommand of rport, and rport-watchdog.cmd forwards to it on Windows', (t) => {
  const dir = tmpDir(t);
  const rport = (args: string[]) =>
    spawnSync(process.execPath, [join(CLI_DIR, 'rport.js'), ...args], { encoding: 'utf8', timeout: 10_000 });
  assert.equal(rport(['watchdog', '--version']).stdout, `rport-watchdog ${VERSION}\n`);
  const missing = rport(['watchdog', 'check', '--state', join(dir, 'state.json')]);
  assert.equal(missing.status, 3, missing.stderr);
  assert.match(missing.stdout, /^unknown: state\.json does not exist/);
  assert.match(rport(['watchdog', 'bogus']).stderr, /^unknown command "bogus": use check, run, install or uninstall/);
  assert.equal(rport(['--version']).stdout, `rport ${VERSION}\n`);
  // Whatever directory it is installed in, with the exit code of rport.exe.
  assert.equal(
    readFileSync(join(ROOT, 'packaging/windows/rport-watchdog.cmd'), 'utf8'),
    '@echo off\r\nrem rport-watchdog for Windows: rport.exe is both the client and its watchdog (rport.exe watchdog ...).\r\n"%~dp0rport.exe" watchdog %*\r\nexit /b %ERRORLEVEL%\r\n',
  );
});

test(
  "release rport is also rport-watchdog: by a link's name (as the package installs it) or its watchdog command; install schedules [rport, watchdog]",
  { skip: notBuilt },
  (t) => {
    const dir = tmpDir(t);
    const env = { ...process.env, XDG_CACHE_HOME: join(dir, 'cache') };
    assert.equal(readlinkSync(join(BUILT, 'rport-watchdog')), 'rport', 'one executable in release-build/bin');
    // A link elsewhere to its absolute path, as /usr/bin/rport-watchdog -> /usr/lib/rport/rport.
    const link = join(dir, 'bin', 'rport-watchdog');
    mkdirSync(join(dir, 'bin'));
    symlinkSync(join(BUILT, 'rport'), link);
    const state = join(dir, 'state.json');
    for (const argv of [[link], [join(BUILT, 'rport'), 'watchdog']]) {
      const run = (args: string[]) =>
        spawnSync(argv[0]!, [...argv.slice(1), ...args], { encoding: 'utf8', env, timeout: 30_000 });
      assert.equal(run(['--version']).stdout, `rport-watchdog ${VERSION}\n`, argv.join(' '));
      const check = run(['check', '--state', state]);
      assert.equal(check.status, 3, check.stderr);
      assert.match(check.stdout, /^unknown: state\.json does not exist/);
      // The scheduler runs the executable itself (not the link) with its watchdog command.
      const conf = join(dir, 'rport.conf');
      const printed = run(['install', '-c', conf, '--cron-file', join(dir, 'cron'), '--print']);
      assert.equal(printed.status, 0, printed.stderr);
      assert.match(
        printed.stdout,
        new RegExp(
          `^\\*/5 \\* \\* \\* \\* root ${realpathSync(join(BUILT, 'rport')).replace(/[/.]/g, '\\$&')} watchdog run --once -c ${conf.replace(/[/.]/g, '\\$&')} >/dev/null 2>&1$`,
          'm',
        ),
      );
    }
    // Called by its own name it is the client.
    assert.equal(execFileSync(join(BUILT, 'rport'), ['--version'], { encoding: 'utf8', env }), `rport ${VERSION}\n`);
  },
);

test(
  'release/: the client carries Node once (one executable, rport-watchdog a link to it), packages compressed with xz',
  { skip: !existsSync(join(ROOT, 'release', 'SHA256SUMS')) && 'release/ is not built: run npm run release' },
  () => {
    const out = join(ROOT, 'release');
    const deb = readdirSync(out).find((f) => /^rport_.*_amd64\.deb$/.test(f))!;
    // dpkg-deb -c: "mode owner size date time path[ -> target]".
    const entries = execFileSync('dpkg-deb', ['-c', join(out, deb)], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .map((l) => l.split(/\s+/).slice(5).join(' '));
    assert.deepEqual(entries.filter((e) => e.startsWith('./usr/bin/')).sort(), [
      './usr/bin/',
      './usr/bin/rport -> ../lib/rport/rport',
      './usr/bin/rport-watchdog -> ../lib/rport/rport',
    ]);
    assert.deepEqual(
      entries.filter((e) => e.startsWith('./usr/lib/rport/') && !e.endsWith('.node')),
      ['./usr/lib/rport/', './usr/lib/rport/rport'],
    );
    for (const d of readdirSync(out).filter((f) => f.endsWith('.deb'))) {
      assert.match(execFileSync('ar', ['t', join(out, d)], { encoding: 'utf8' }), /^data\.tar\.xz$/m, d);
    }
    const tar = (f: string) => execFileSync('tar', ['-tvzf', join(out, f)], { encoding: 'utf8' });
    const linux = readdirSync(out).find((f) => /^rport-.*-linux-x64\.tar\.gz$/.test(f))!;
    assert.match(tar(linux), /^l\S+ .* rport-[^/]+\/rport-watchdog -> rport$/m);
    const win = readdirSync(out).find((f) => /^rport-.*-win-x64\.tar\.gz$/.test(f));
    if (win) {
      const names = tar(win)
        .trim()
        .split('\n')
        .map((l) => l.split('/').pop())
        .sort();
      assert.deepEqual(names, [
        '',
        'install.ps1',
        'rport-watchdog.cmd',
        'rport-watchdog.ps1',
        'rport.conf.example',
        'rport.exe',
      ]);
    }
  },
);

test(
  "release executables: --version is package.json's, rportd --help, a release client connects to a release rportd on 127.0.0.1 with its add-ons extracted to a private cache",
  { skip: notBuilt },
  async (t) => {
    const dir = tmpDir(t);
    // Add-ons load at start, also for --version: extracted into the test's folder, not ~/.cache.
    const env = { ...process.env, XDG_CACHE_HOME: join(dir, 'version-cache') };
    for (const c of ['rport', 'rportd', 'rport-watchdog']) {
      assert.equal(execFileSync(join(BUILT, c), ['--version'], { encoding: 'utf8', env }), `${c} ${VERSION}\n`);
    }
    assert.match(
      execFileSync(join(BUILT, 'rportd'), ['--help'], { encoding: 'utf8', env }),
      /^Usage: rportd \[-c rportd\.conf\]/m,
    );
    const cache = join(dir, 'cache');
    const port = await freePort();
    // A bcrypt credential too: its check runs in a worker thread, whose code the executable carries.
    const authFile = join(dir, 'auth.json');
    writeFileSync(authFile, JSON.stringify({ hashed: bcrypt.hashSync('hashed-pw', 4) }), { mode: 0o600 });
    const server = runBuilt(
      t,
      join(BUILT, 'rportd'),
      [
        '--address',
        `127.0.0.1:${port}`,
        '--api-address',
        '',
        '--auth',
        CLIENT_AUTH,
        '--auth-file',
        authFile,
        '--data-dir',
        join(dir, 'server'),
        '--log-level',
        'debug',
      ],
      { XDG_CACHE_HOME: join(dir, 'server-cache') },
    );
    const fp = (await server.waitFor(/host key fingerprint (SHA256:\S+)/))[1]!;
    const client = runBuilt(
      t,
      join(BUILT, 'rport'),
      [
        '--server',
        `127.0.0.1:${port}`,
        '--auth',
        CLIENT_AUTH,
        '--fingerprint',
        fp,
        '--data-dir',
        join(dir, 'client'),
        '--log-level',
        'debug',
        '--id',
        'sea-client',
      ],
      { XDG_CACHE_HOME: cache },
    );
    await client.waitFor(/INFO {2}client: connected to 127\.0\.0\.1:\d+/);
    await server.waitFor(/client sea-client .* connected from 127\.0\.0\.1/);
    for (const p of [client, server]) {
      await p.waitFor(/DEBUG \w+: ssh2 native crypto binding is active/);
      await p.waitFor(/DEBUG \w+: bufferutil is active/);
      await p.waitFor(/DEBUG \w+: glibc keeps freed buffers for reuse \(malloc_tune\.node\)/);
    }
    await server.waitFor(/ssh2 channel windows grow to 16 MiB/);
    // Content-addressed and private: <cache>/rport/native/<sha256 of the file>/<name>, folders 0700.
    const root = join(cache, 'rport', 'native');
    assert.equal(statSync(root).mode & 0o777, 0o700);
    const names = new Map<string, string>();
    for (const hash of readdirSync(root)) {
      assert.equal(statSync(join(root, hash)).mode & 0o777, 0o700);
      for (const name of readdirSync(join(root, hash))) {
        names.set(name, hash);
        const sha = execFileSync('sha256sum', [join(root, hash, name)], { encoding: 'utf8' }).split(' ')[0];
        assert.equal(sha, hash, `${name} is stored under its own hash`);
      }
    }
    // sd_notify.node is loaded only under systemd (NOTIFY_SOCKET set); SQLite only by the server.
    assert.deepEqual([...names.keys()].sort(), [
      'bufferutil.node',
      'cpufeatures.node',
      'malloc_tune.node',
      'sshcrypto.node',
    ]);
    assert.ok(
      readdirSync(join(dir, 'server-cache', 'rport', 'native')).some((h) =>
        existsSync(join(dir, 'server-cache', 'rport', 'native', h, 'better_sqlite3.node')),
      ),
    );
    await client.stop();

    // Someone who can write the cache swaps in their own sshcrypto.node: its hash no longer matches its
    // folder, so it is replaced before it is loaded, never loaded.
    const planted = join(root, names.get('sshcrypto.node')!, 'sshcrypto.node');
    rmSync(planted);
    writeFileSync(planted, 'not an ELF file');
    const again = runBuilt(
      t,
      join(BUILT, 'rport'),
      [
        '--server',
        `127.0.0.1:${port}`,
        '--auth',
        'hashed:hashed-pw',
        '--data-dir',
        join(dir, 'client'),
        '--log-level',
        'debug',
        '--id',
        'sea-client-2',
      ],
      { XDG_CACHE_HOME: cache },
    );
    await again.waitFor(/ssh2 native crypto binding is active/);
    await again.waitFor(/connected to 127\.0\.0\.1/);
    assert.notEqual(readFileSync(planted, 'utf8'), 'not an ELF file');
  },
);

test(
  "release rport: a cache folder others can write is not used; without ssh2's native crypto it connects in pure JavaScript and warns",
  { skip: notBuilt },
  async (t) => {
    const dir = tmpDir(t);
    const port = await freePort();
    const server = runBuilt(
      t,
      join(BUILT, 'rportd'),
      ['--address', `127.0.0.1:${port}`, '--api-address', '', '--auth', CLIENT_AUTH, '--data-dir', join(dir, 'server')],
      { XDG_CACHE_HOME: join(dir, 'server-cache') },
    );
    await server.waitFor(/listening for clients/);

    // A shared, world-writable cache: anyone could plant an add-on there, so it is passed over.
    const shared = join(dir, 'shared');
    mkdirSync(join(shared, 'rport', 'native'), { recursive: true });
    chmodSync(join(shared, 'rport', 'native'), 0o777);
    // The executable alone in a folder with a broken sshcrypto.node beside it (taken first, fails to load).
    const alone = join(dir, 'bin');
    mkdirSync(alone);
    copyFileSync(join(BUILT, 'rport'), join(alone, 'rport'));
    chmodSync(join(alone, 'rport'), 0o755);
    writeFileSync(join(alone, 'sshcrypto.node'), 'broken');
    mkdirSync(join(dir, 'tmp'));
    const client = runBuilt(
      t,
      join(alone, 'rport'),
      [
        '--server',
        `127.0.0.1:${port}`,
        '--auth',
        CLIENT_AUTH,
        '--data-dir',
        join(dir, 'client'),
        '--log-level',
        'debug',
      ],
      { XDG_CACHE_HOME: shared, TMPDIR: join(dir, 'tmp') },
    );
    const warn = await client.waitFor(/WARN {2}client: ssh2 native crypto binding is not loaded: .*/);
    assert.match(warn[0], /pure JavaScript/);
    await client.waitFor(/INFO {2}client: connected to 127\.0\.0\.1:\d+/);
    assert.deepEqual(
      readdirSync(join(shared, 'rport', 'native')),
      [],
      'nothing extracted into the world-writable folder',
    );
    assert.ok(
      readdirSync(join(dir, 'tmp')).some((d) => d.startsWith('rport-native-')),
      'extracted into a private folder in TMPDIR instead',
    );
  },
);

test('rport service: the Windows service is WinSW running rport.exe -c CONF with restart recovery actions; off Windows it says where the Linux service is', (t) => {
  const exe = 'C:\\Program Files\\rport\\rport.exe';
  const conf = 'C:\\Program Files\\rport\\rport & co.conf';
  const wrapper = Buffer.from('MZ wrapper');
  const steps = serviceSteps('install', exe, conf, (n) =>
    n === 'winsw.exe' ? wrapper : Buffer.from('<configuration/>'),
  );
  const xml = steps.find((s) => s.file?.path.endsWith('rport-service.xml'))!.file!.content as string;
  assert.equal(xml, wrapperXml(exe, conf));
  assert.match(xml, /<id>rport<\/id>/);
  assert.match(xml, /<executable>C:\\Program Files\\rport\\rport\.exe<\/executable>/);
  assert.match(xml, /<arguments>-c "C:\\Program Files\\rport\\rport &amp; co\.conf"<\/arguments>/, 'XML-escaped');
  assert.equal(xml.match(/<onfailure action="restart" delay="\d+ sec"\/>/g)!.length, 3);
  assert.match(xml, /<resetfailure>1 day<\/resetfailure>/);
  assert.equal(steps[0]!.file!.content, wrapper, 'the wrapper comes from the executable');
  assert.deepEqual(
    steps.filter((s) => s.command).map((s) => s.command),
    [
      ['C:\\Program Files\\rport\\rport-service.exe', 'install'],
      ['sc.exe', 'failureflag', 'rport', '1'],
    ],
  );
  assert.deepEqual(
    serviceSteps('stop', exe, conf, () => Buffer.alloc(0)).map((s) => s.command),
    [['sc.exe', 'stop', 'rport']],
  );

  const dir = tmpDir(t);
  const printed = spawnSync(
    process.execPath,
    [join(CLI_DIR, 'rport.js'), 'service', 'install', '--print', '-c', join(dir, 'rport.conf')],
    { encoding: 'utf8' },
  );
  assert.equal(printed.status, 0, printed.stderr);
  assert.match(printed.stdout, /rport-service\.exe install\nsc\.exe failureflag rport 1\n$/);
  if (process.platform !== 'win32') {
    const r = spawnSync(process.execPath, [join(CLI_DIR, 'rport.js'), 'service', 'install'], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.equal(
      r.stderr,
      'rport service is for Windows; on Linux the rport package installs rport.service (systemctl enable --now rport)\n',
    );
  }
  const bad = spawnSync(process.execPath, [join(CLI_DIR, 'rport.js'), 'service', 'restart'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /^unknown service action "restart": use install, uninstall, start or stop/);
});

const ARM64 = join(ROOT, 'release-build', 'bin', 'linux-arm64', 'rport');
const ARM64_SYSROOT = '/usr/aarch64-linux-gnu';
const noArm64 = !existsSync('/usr/bin/qemu-aarch64')
  ? 'qemu-aarch64 is not installed (apt-get install qemu-user libstdc++6-arm64-cross)'
  : !existsSync(join(ARM64_SYSROOT, 'lib/libstdc++.so.6'))
    ? 'the arm64 C++ runtime is not installed (apt-get install libstdc++6-arm64-cross)'
    : !existsSync(ARM64)
      ? 'release-build/bin/linux-arm64 is not built: run npm run release'
      : undefined;

test(
  'release linux-arm64 rport under qemu-aarch64: connects to rportd on 127.0.0.1 and sends READY=1 through its cross-compiled sd_notify.node',
  { skip: noArm64, timeout: 240_000 },
  async (t) => {
    const server = await startServer(t);
    const dir = tmpDir(t);
    const socket = join(dir, 'notify.sock');
    const receiver = new Proc(
      spawn('python3', [fileURLToPath(new URL('../../harness/notify_receiver.py', import.meta.url)), socket], {
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    cleanup(t, () => receiver.stop());
    await receiver.waitFor(/"listening"/);
    const client = runBuilt(
      t,
      '/usr/bin/qemu-aarch64',
      [
        '-L',
        ARM64_SYSROOT,
        ARM64,
        '--server',
        `127.0.0.1:${server.port}`,
        '--auth',
        CLIENT_AUTH,
        '--fingerprint',
        server.fingerprint,
        '--data-dir',
        join(dir, 'data'),
        '--log-level',
        'debug',
        '--id',
        'arm64-client',
      ],
      { XDG_CACHE_HOME: join(dir, 'cache'), NOTIFY_SOCKET: socket },
    );
    await client.waitFor(/INFO {2}client: connected to 127\.0\.0\.1:\d+/, 180_000);
    await server.proc.waitFor(/client arm64-client .* connected from 127\.0\.0\.1/);
    await receiver.waitFor(/READY=1/, 10_000);
    assert.match(
      client.output,
      /WARN {2}client: ssh2 native crypto binding is not loaded: .*no working sshcrypto\.node in this build for linux-arm64/,
    );
    assert.match(client.output, /Using NOTIFY_SOCKET \S+ for systemd watchdog integration/);
  },
);
