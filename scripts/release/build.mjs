#!/usr/bin/env node
// npm run release [-- linux-x64 win-x64 ...]: single executables, .deb packages, tarballs and SHA256SUMS
// in release/, and nothing else there (the executables also in release-build/bin/<target>/). They embed Node NODE_LTS (node-lts.mjs), whatever Node runs this.
// Needs the npm registry (the official Node binaries, cached in release-build/cache) and nothing else;
// intermediate files go to release-build/work. See docs/install.md.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { addonsForLts } from './addons.mjs';
import { bundleCommand } from './bundle.mjs';
import { buildDebs } from './deb.mjs';
import { crossBuildAddon } from './cross.mjs';
import { ltsNode, NODE_LTS, npmPackage } from './node-lts.mjs';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const OUT = join(ROOT, 'release');
const WORK = join(ROOT, 'release-build', 'work');
/** The executables, kept for the tests and the benchmark; they ship inside the tarballs and packages. */
const BIN = join(ROOT, 'release-build', 'bin');
const VERSION = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version;
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

/**
 * What each platform gets. rport is also rport-watchdog (a link to it; rport-watchdog.cmd on Windows).
 * The Windows build has no server (rportd is for Linux).
 */
const TARGETS = {
  'linux-x64': { exe: '', commands: ['rport', 'rportd'], deb: 'amd64' },
  // No rportd: its SQLite add-on cannot be built here for arm64 (better-sqlite3's prebuilds are not on npm).
  'linux-arm64': { exe: '', commands: ['rport'], deb: 'arm64' },
  'win-x64': { exe: '.exe', commands: ['rport'] },
};

/**
 * V8 flags every executable starts with (the SEA's execArgv: set before V8 starts, never at run time).
 * --no-incremental-marking: without it a process could settle in a mode that spends 2-3x the CPU per GB on
 * full collections that free nothing (BENCHMARKS.md, "CPU per GB, the two modes").
 */
const EXEC_ARGV = ['--no-incremental-marking'];

const log = (m) => process.stdout.write(`release: ${m}\n`);
const mib = (p) => `${(statSync(p).size / 2 ** 20).toFixed(1)} MiB`;
const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], timeout: 300_000, ...opts });

/** The official Node binary for a target (NODE_LTS, from its npm package). */
const nodeBinary = (target) => join(ltsNode(target), 'bin', `node${TARGETS[target].exe}`);

/** WinSW, the Windows service wrapper node-windows ships (src/service/windows.ts): pinned, cached. */
const NODE_WINDOWS = 'node-windows@1.0.0-beta.8';
function serviceWrapper() {
  const dir = join(npmPackage(NODE_WINDOWS, ['bin/winsw', 'LICENSE']), 'bin', 'winsw');
  return { 'winsw.exe': join(dir, 'winsw.exe'), 'winsw.exe.config': join(dir, 'winsw.exe.config') };
}

/**
 * LIEF (inside postject) warns about sections it does not know in every official Node binary; the
 * injected result is checked by the tests that run it. These lines are dropped; any other is shown.
 */
const POSTJECT_NOISE = [/^warning: Can't find string offset for section name/, /^warning: The signature seems corrupted!?$/, /^Start injection of NODE_SEA_BLOB in /, /^💉 Injection done!$/];

/** postject in its own process, so its output can be filtered (the API writes to this one's stderr). */
function inject(exe, blob) {
  const cli = join(ROOT, 'node_modules/postject/dist/cli.js');
  const r = spawnSync(process.execPath, [cli, exe, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SEA_FUSE], { encoding: 'utf8', timeout: 300_000 });
  // Without its colours.
  const lines = `${r.stdout}${r.stderr}`.replace(/\x1b\[[0-9;]*m/g, '').split('\n').map((l) => l.trim());
  const shown = lines.filter((l) => l && !POSTJECT_NOISE.some((re) => re.test(l)));
  if (shown.length) process.stderr.write(`${shown.map((l) => `postject: ${l}`).join('\n')}\n`);
  if (r.status !== 0) throw new Error(`postject failed on ${exe} (exit ${r.status ?? r.signal})`);
}

/** The add-ons a target carries: asset name -> file built for it. Missing ones fall back to JavaScript. */
function addonsFor(target, linuxX64Addons) {
  if (target === 'linux-x64') return addonsForLts(linuxX64Addons, ltsNode('linux-x64'), WORK);
  const out = new Map();
  if (target === 'win-x64') out.set('bufferutil.node', join(ROOT, 'node_modules/bufferutil/prebuilds/win32-x64/bufferutil.node'));
  if (target === 'linux-arm64') {
    for (const name of ['sd_notify', 'malloc_tune']) {
      const built = crossBuildAddon(name, join(WORK, 'linux-arm64'), join(ltsNode('linux-x64'), 'include', 'node'));
      if (built) out.set(`${name}.node`, built);
    }
  }
  return out;
}

async function seaExecutable(target, command, bundle, addons) {
  const t = TARGETS[target];
  const dir = join(WORK, target);
  mkdirSync(dir, { recursive: true });
  const blob = join(dir, `${command}.blob`);
  const assets = Object.fromEntries([...addons].filter(([name]) => bundle.addons.has(name)));
  if (target === 'win-x64' && command === 'rport') Object.assign(assets, serviceWrapper());
  const config = {
    main: bundle.file,
    output: blob,
    disableExperimentalSEAWarning: true,
    // The code cache is V8's for this machine's CPU and Node: only for the target this machine runs.
    useCodeCache: target === `${process.platform}-${process.arch}`,
    execArgv: EXEC_ARGV,
    assets,
  };
  writeFileSync(join(dir, `${command}.sea.json`), JSON.stringify(config, null, 2));
  // The blob is for one Node version: made by the one it is injected into (for every target, the
  // linux-x64 binary of that version; the code cache only where it is that binary).
  // Made under EXEC_ARGV too: V8 rejects a code cache made under other flags (their hash is in it).
  // Its one line ("Wrote single executable preparation blob") is kept out; a failure's output is in the error.
  run(nodeBinary('linux-x64'), [...EXEC_ARGV, '--experimental-sea-config', join(dir, `${command}.sea.json`)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exe = join(BIN, target, `${command}${t.exe}`);
  mkdirSync(dirname(exe), { recursive: true });
  copyFileSync(nodeBinary(target), exe);
  chmodSync(exe, 0o755);
  inject(exe, blob);
  log(`${target}/${command}${t.exe} ${mib(exe)} (add-ons: ${Object.keys(assets).join(', ') || 'none'})`);
  return { exe, assets };
}

/** files: [source path, name in the tarball], or [{ link: target }, name] for a symbolic link. */
function tarball(name, files) {
  const stage = join(WORK, 'tar', name);
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });
  for (const [src, as] of files) {
    if (typeof src === 'object') {
      symlinkSync(src.link, join(stage, as));
      continue;
    }
    copyFileSync(src, join(stage, as));
    chmodSync(join(stage, as), statSync(src).mode & 0o777);
  }
  const file = join(OUT, `${name}.tar.gz`);
  run('tar', ['--owner=0', '--group=0', '--numeric-owner', '-czf', file, '-C', join(WORK, 'tar'), name]);
  log(`${name}.tar.gz ${mib(file)}`);
}

function sha256sums() {
  const files = readdirSync(OUT).filter((f) => f.endsWith('.tar.gz') || f.endsWith('.deb')).sort();
  const lines = files.map((f) => `${createHash('sha256').update(readFileSync(join(OUT, f))).digest('hex')}  ${f}`);
  writeFileSync(join(OUT, 'SHA256SUMS'), `${lines.join('\n')}\n`);
}

async function main() {
  if (`${process.platform}-${process.arch}` !== 'linux-x64') throw new Error('the release is built on linux-x64 (its add-ons are this machine\'s)');
  const targets = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(TARGETS);
  for (const t of targets) if (!TARGETS[t]) throw new Error(`unknown target ${t} (known: ${Object.keys(TARGETS).join(', ')})`);
  if (!existsSync(join(ROOT, 'build/Release/sd_notify.node'))) throw new Error('build/Release/sd_notify.node is missing: run npm ci first');
  rmSync(OUT, { recursive: true, force: true });
  for (const d of [WORK, BIN]) rmSync(d, { recursive: true, force: true });
  for (const d of [OUT, WORK]) mkdirSync(d, { recursive: true });
  log(`embedding Node ${NODE_LTS}`);

  const bundles = {};
  for (const command of ['rport', 'rportd']) {
    const file = join(WORK, `${command}.cjs`);
    const { addons } = await bundleCommand(command, file, VERSION);
    bundles[command] = { file, addons };
    log(`bundle ${command}.cjs ${(statSync(file).size / 1024).toFixed(0)} KiB, add-ons ${[...addons.keys()].join(', ') || 'none'}`);
  }
  const linuxX64Addons = new Map(Object.values(bundles).flatMap((b) => [...b.addons]));

  const built = {};
  for (const target of targets) {
    const addons = addonsFor(target, linuxX64Addons);
    built[target] = {};
    for (const command of TARGETS[target].commands) built[target][command] = await seaExecutable(target, command, bundles[command], addons);
    const x = TARGETS[target].exe;
    const name = (pkg) => `${pkg}-${VERSION}-${target}`;
    if (x) {
      const win = (f) => [join(ROOT, 'packaging/windows', f), f];
      tarball(name('rport'), [[built[target].rport.exe, 'rport.exe'], win('rport-watchdog.cmd'), [join(ROOT, 'packaging/conf/rport.conf'), 'rport.conf.example'], win('install.ps1'), win('rport-watchdog.ps1')]);
    } else {
      // As installed: rport-watchdog is rport under another name (the tests and the bench run it so too).
      symlinkSync('rport', join(BIN, target, 'rport-watchdog'));
      tarball(name('rport'), [[built[target].rport.exe, 'rport'], [{ link: 'rport' }, 'rport-watchdog'], [join(ROOT, 'packaging/conf/rport.conf'), 'rport.conf.example'], [join(ROOT, 'packaging/systemd/rport.service'), 'rport.service']]);
      if (built[target].rportd) tarball(name('rportd'), [[built[target].rportd.exe, 'rportd'], [join(ROOT, 'packaging/conf/rportd.conf'), 'rportd.conf.example'], [join(ROOT, 'packaging/systemd/rportd.service'), 'rportd.service']]);
      // rport.service is Type=notify: a client without sd_notify.node would never become ready.
      if (!addons.has('sd_notify.node')) log(`no .deb for ${target}: sd_notify.node could not be built`);
      else for (const deb of buildDebs({ root: ROOT, out: OUT, work: join(WORK, 'deb', target), version: VERSION, arch: TARGETS[target].deb, executables: built[target] })) log(`${deb} ${mib(join(OUT, deb))}`);
    }
  }
  sha256sums();
  rmSync(WORK, { recursive: true, force: true });
  const total = readdirSync(OUT).reduce((n, f) => n + statSync(join(OUT, f)).size, 0);
  log(`done: ${readdirSync(OUT).join(' ')} (${(total / 2 ** 20).toFixed(1)} MiB in all)`);
}

main().catch((err) => {
  process.stderr.write(`release: ${err.message}\n`);
  process.exit(1);
});
