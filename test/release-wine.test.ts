import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { cleanup, CLIENT_AUTH, eventually, startServer, tmpDir } from '../harness/procs.js';

/**
 * The Windows client of the release (release-build/bin/win-x64/rport.exe, in its tarball) under Debian's wine64, connecting to rportd
 * on 127.0.0.1. Wine is not Windows: this shows the executable, its bundle and its add-on loading work
 * on a Win32 API, not the service control manager (rport service) nor PowerShell.
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const EXE = join(ROOT, 'release-build', 'bin', 'win-x64', 'rport.exe');
const WINE = ['/usr/lib/wine/wine64', '/usr/bin/wine64'].find((p) => existsSync(p));
const WINESERVER = ['/usr/lib/wine/wineserver64', '/usr/lib/wine/wineserver', '/usr/bin/wineserver'].find((p) =>
  existsSync(p),
);
const skip =
  !WINE || !WINESERVER
    ? 'wine64 is not installed (apt-get install wine64; .ci/run does)'
    : !existsSync(EXE)
      ? 'release-build/bin/win-x64/rport.exe is not built: run npm run release (CI does, before the tests)'
      : undefined;
const exec = promisify(execFile);

test(
  'release rport.exe under wine64 connects to rportd on 127.0.0.1, with bufferutil and pure-JavaScript ssh2 (warned)',
  { skip, timeout: 180_000 },
  async (t) => {
    const server = await startServer(t);
    const dir = tmpDir(t);
    // A prefix of the test's own; Node 20 refuses Windows versions before 8.1, and a new prefix says 7.
    const env = {
      ...process.env,
      WINEPREFIX: join(dir, 'prefix'),
      WINEDEBUG: '-all',
      WINEDLLOVERRIDES: 'mscoree,mshtml=',
    };
    cleanup(t, () => exec(WINESERVER!, ['-k'], { env, timeout: 20_000 }).catch(() => undefined));
    await exec(WINE!, ['winecfg', '/v', 'win10'], { env, timeout: 120_000 });
    // Debian bookworm's Wine 8 cannot give Node 24+'s V8 the address space it reserves at start (its sandbox):
    // the process ends at once with that fatal error. That is Wine's limit, not the executable's; any other
    // failure still fails this test.
    const probeLog = join(dir, 'version.log');
    const probeFd = openSync(probeLog, 'w');
    const probe = spawn(WINE!, [EXE, '--version'], { env, stdio: ['ignore', probeFd, probeFd], timeout: 120_000 });
    closeSync(probeFd);
    await new Promise((resolve) => probe.on('exit', resolve).on('error', resolve));
    if (/Fatal process out of memory: SegmentedTable::InitializeTable/.test(readFileSync(probeLog, 'utf8'))) {
      return t.skip(
        "this Wine cannot start the executable's Node (V8 fails to reserve its sandbox: Fatal process out of memory: SegmentedTable::InitializeTable); a newer Wine or Windows is needed to run it",
      );
    }
    // Node under wine cannot write to a pipe (EBADF): the output goes to a file.
    const log = join(dir, 'rport.log');
    const fd = openSync(log, 'w');
    const child = spawn(
      WINE!,
      [
        EXE,
        '--server',
        `127.0.0.1:${server.port}`,
        '--auth',
        CLIENT_AUTH,
        '--fingerprint',
        server.fingerprint,
        '--id',
        'wine-client',
        '--data-dir',
        `Z:${join(dir, 'data').replace(/\//g, '\\')}`,
        '--log-level',
        'debug',
        '--watchdog-integration',
      ],
      { env, stdio: ['ignore', fd, fd] },
    );
    closeSync(fd);
    cleanup(t, () => {
      child.kill('SIGKILL');
    });
    const text = () => (existsSync(log) ? readFileSync(log, 'utf8') : '');
    await eventually(
      () => (/INFO {2}client: connected to 127\.0\.0\.1:\d+/.test(text()) ? true : undefined),
      90_000,
      'rport.exe connected',
    ).catch((err: Error) => {
      throw new Error(`${err.message}; its log:\n${text()}`);
    });
    await server.proc.waitFor(/client wine-client .* connected from 127\.0\.0\.1/);
    const out = text();
    assert.match(out, /INFO {2}client: rport \d+\.\d+\.\d+ starting/);
    assert.match(
      out,
      /WARN {2}client: ssh2 native crypto binding is not loaded: SSH runs 2-3x slower \(pure JavaScript\); no working sshcrypto\.node in this build for win32-x64/,
    );
    assert.match(out, /DEBUG client: bufferutil is active/, 'the win32 prebuild, extracted from the executable');
    // state.json written through the Windows file API into the Linux folder behind Z:.
    const state = await eventually(
      () =>
        existsSync(join(dir, 'data', 'state.json'))
          ? JSON.parse(readFileSync(join(dir, 'data', 'state.json'), 'utf8'))
          : undefined,
      10_000,
      'state.json',
    );
    assert.equal(typeof state.last_update_ts, 'number');
  },
);
