#!/usr/bin/env node
// The test tiers, split as ws splits its tests, by the lists below rather than by folder (test files stay
// where they are). Run after npm run build: node scripts/test.mjs [unit|integration|system|all] [--list]
//   unit         in one process: no rportd, no peers, no other program
//   integration  real rportd, clients, hostile peers and tools (ssh, curl) on 127.0.0.1
//   system       the machine's parts: systemd, the release's executables and packages, wine, Chromium,
//                PostgreSQL and HAProxy, and the long runs (soak)
// A test file in no list runs with integration, and the run starts with a line saying so; a listed file
// that does not exist stops the run (exit 2). --dir DIR looks at DIR instead of dist/test.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

const TIERS = {
  unit: ['compat-config', 'layers', 'malloc-tune', 'packaging', 'tunnel-timers', 'units'],
  integration: [
    'api-attack',
    'api-auth',
    'api-tls',
    'api-compat',
    'backpressure',
    'client-auth-attack',
    'commands',
    'commands-attacks',
    'commands-fleet',
    'compat',
    'config',
    'connection',
    'docs',
    'event-streams',
    'files',
    'files-symlinks',
    'fuzz',
    'hostile-peers',
    'interop-openrport',
    'interop-openrport-client',
    'job-budgets',
    'registry',
    'resets',
    'rport-server-attack',
    'rport-watchdog',
    'stock-client-attack',
    'tunnel-abort',
    'tunnel-policy',
    'tunnels',
    'watchdog',
  ],
  system: [
    'cluster',
    'cluster-attack',
    'cluster-commands',
    'cluster-tls',
    'commands-dashboard',
    'dashboard',
    'dashboard-tls',
    'deb-install',
    'release',
    'release-wine',
    'soak',
    'store',
    'systemd',
  ],
};
const DEFAULT_TIER = 'integration';
/** The files that take longest (each over 40 s on a 2-core machine), longest first. */
const LONGEST = [
  'connection',
  'api-compat',
  'client-auth-attack',
  'compat',
  'registry',
  'tunnels',
  'config',
  'watchdog',
  'commands',
  'api-auth',
  'files',
];

const args = process.argv.slice(2);
const dirAt = args.indexOf('--dir');
const dir = dirAt >= 0 ? args[dirAt + 1] : join(ROOT, 'dist', 'test');
const wanted = args.filter((a, i) => !a.startsWith('--') && (dirAt < 0 || i !== dirAt + 1));
const names = wanted.length === 0 || wanted.includes('all') ? Object.keys(TIERS) : wanted;
for (const n of names) {
  if (!TIERS[n]) {
    process.stderr.write(`scripts/test.mjs: unknown tier "${n}": use unit, integration, system or all\n`);
    process.exit(2);
  }
}
if (!existsSync(dir)) {
  process.stderr.write(`scripts/test.mjs: ${dir} does not exist: run npm run build first\n`);
  process.exit(2);
}

const stray = LONGEST.filter((n) => !Object.values(TIERS).flat().includes(n));
if (stray.length) {
  process.stderr.write(`scripts/test.mjs: LONGEST names ${stray.join(', ')}, in no tier: remove it from LONGEST\n`);
  process.exit(2);
}
const found = readdirSync(dir)
  .filter((f) => f.endsWith('.test.js'))
  .map((f) => f.slice(0, -'.test.js'.length));
const listed = Object.values(TIERS).flat();
const missing = listed.filter((n) => !found.includes(n));
if (missing.length) {
  process.stderr.write(
    `scripts/test.mjs: ${missing.map((n) => `test/${n}.test.ts`).join(', ')} listed in TIERS but not found: remove it from scripts/test.mjs\n`,
  );
  process.exit(2);
}
const unlisted = found.filter((n) => !listed.includes(n));
if (unlisted.length) {
  process.stderr.write(
    `scripts/test.mjs: ${unlisted.map((n) => `test/${n}.test.ts`).join(', ')} in no tier: run with ${DEFAULT_TIER}; add to TIERS in scripts/test.mjs\n`,
  );
}
const files = names
  .flatMap((n) => [...TIERS[n], ...(n === DEFAULT_TIER ? unlisted : [])])
  .map((n) => join(dir, `${n}.test.js`))
  .sort();
// The longest files start first, so the run does not end waiting for one started last.
const weight = (f) => LONGEST.indexOf(f.slice(dir.length + 1, -'.test.js'.length)) >>> 0;
files.sort((a, b) => weight(a) - weight(b));

if (args.includes('--list')) {
  process.stdout.write(`${files.join('\n')}\n`);
  process.exit(0);
}
// Files run side by side, two a core: a file spends most of its time waiting (the timers it tests, processes
// starting, sockets), not computing, so one a core leaves the cores idle. The waits and durations the tests
// assert scale with the load this makes (harness/procs.ts: loadFactor). The system tier stays at two: its
// files share the machine's systemd, PostgreSQL and packages and measure restarts and memory.
const system = new Set(TIERS.system.map((n) => join(dir, `${n}.test.js`)));
const runs = [
  [files.filter((f) => !system.has(f)), availableParallelism() * 2],
  [files.filter((f) => system.has(f)), 2],
];
let status = 0;
for (const [group, concurrency] of runs) {
  if (group.length === 0) continue;
  const r = spawnSync(process.execPath, ['--test', `--test-concurrency=${concurrency}`, ...group], {
    stdio: 'inherit',
  });
  status ||= r.status ?? 1;
}
process.exit(status);
