// npm run bench:release: start-up time and memory of the release's single executables (release-build/bin/linux-x64)
// against `node dist/src/cli/...` on this machine, written into BENCHMARKS.md between its markers.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSection } from './lib/sections.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BUILT = join(ROOT, 'release-build', 'bin', 'linux-x64');
const RUNS = 15;
const AUTH = 'bench:secret';

type Cmd = 'rport' | 'rportd' | 'rport-watchdog';
const variants: Array<{ name: string; argv: (c: Cmd) => string[] }> = [
  { name: 'single executable', argv: (c) => [join(BUILT, c)] },
  { name: 'node dist/', argv: (c) => [process.execPath, join(ROOT, 'dist/src/cli', `${c}.js`)] },
];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rssMiB = (pid: number) =>
  Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

/** Wall time of `cmd --version`, spawn to exit. */
function versionMs(argv: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(argv[0]!, [...argv.slice(1), '--version'], { encoding: 'utf8', timeout: 20_000 });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} --version: ${r.stderr}`);
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** Starts a command, resolves with the time until a line matches, then the RSS after `idleMs` quiet. */
function startAndMeasure(
  argv: string[],
  args: string[],
  re: RegExp,
  idleMs: number,
): Promise<{ ms: number; rss: number }> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(argv[0]!, [...argv.slice(1), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NOTIFY_SOCKET: '' },
    });
    let out = '';
    let ms = 0;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${argv.join(' ')}: no line matching ${re} within 30s:\n${out}`));
    }, 30_000);
    const onData = (b: Buffer) => {
      out += b.toString();
      if (ms || !re.test(out)) return;
      ms = Number(process.hrtime.bigint() - t0) / 1e6;
      setTimeout(() => {
        clearTimeout(timer);
        const rss = rssMiB(child.pid!);
        child.once('exit', () => resolve({ ms, rss }));
        child.kill('SIGTERM');
      }, idleMs);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
  });
}

async function main(): Promise<void> {
  if (!existsSync(join(BUILT, 'rport')))
    throw new Error('release-build/bin/linux-x64 is not built: run npm run release -- linux-x64 first');
  const dir = mkdtempSync(join(tmpdir(), 'rport-bench-release-'));
  const rows: string[] = [];
  try {
    for (const c of ['rport', 'rportd', 'rport-watchdog'] as const) {
      const [sea, node] = variants.map((v) => median(Array.from({ length: RUNS }, () => versionMs(v.argv(c)))));
      rows.push(
        `| \`${c} --version\`, spawn to exit (median of ${RUNS}) | ${sea!.toFixed(0)} ms | ${node!.toFixed(0)} ms | ${(sea! / node!).toFixed(2)}x |`,
      );
    }
    // A server for the clients: always the same one (node dist/), so only the client differs.
    const port = 20000 + (process.pid % 20000);
    const server = spawn(
      process.execPath,
      [
        join(ROOT, 'dist/src/cli/rportd.js'),
        '--address',
        `127.0.0.1:${port}`,
        '--api-address',
        '',
        '--auth',
        AUTH,
        '--data-dir',
        join(dir, 'server'),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    await new Promise<void>((r) =>
      server.stderr.on('data', (b: Buffer) => /listening for clients/.test(b.toString()) && r()),
    );
    const measured: Record<string, Array<{ ms: number; rss: number }>> = {};
    for (let i = 0; i < 3; i++) {
      for (const v of variants) {
        const client = await startAndMeasure(
          v.argv('rport'),
          ['--server', `127.0.0.1:${port}`, '--auth', AUTH, '--data-dir', join(dir, 'client'), '--id', `bench-${i}`],
          /connected to 127\.0\.0\.1/,
          3000,
        );
        const srv = await startAndMeasure(
          v.argv('rportd'),
          [
            '--address',
            '127.0.0.1:0',
            '--api-address',
            '127.0.0.1:0',
            '--auth',
            AUTH,
            '--data-dir',
            join(dir, `s-${i}`),
          ],
          /API listening/,
          3000,
        );
        (measured[`client ${v.name}`] ??= []).push(client);
        (measured[`server ${v.name}`] ??= []).push(srv);
      }
    }
    server.kill('SIGTERM');
    const m = (k: string, f: 'ms' | 'rss') => median(measured[k]!.map((x) => x[f]));
    const row = (what: string, who: string, f: 'ms' | 'rss', unit: string) => {
      const a = m(`${who} single executable`, f);
      const b = m(`${who} node dist/`, f);
      rows.push(
        `| ${what} | ${a.toFixed(f === 'ms' ? 0 : 1)} ${unit} | ${b.toFixed(f === 'ms' ? 0 : 1)} ${unit} | ${(a / b).toFixed(2)}x |`,
      );
    };
    row('`rport`: spawn to "connected" against rportd on 127.0.0.1 (median of 3)', 'client', 'ms', 'ms');
    row('`rport`: RSS 3 s after connecting', 'client', 'rss', 'MiB');
    row('`rportd`: spawn to "API listening" (registry opened, median of 3)', 'server', 'ms', 'ms');
    row('`rportd`: RSS 3 s after start', 'server', 'rss', 'MiB');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const section = writeSection(
    join(ROOT, 'BENCHMARKS.md'),
    'npm run bench:release',
    `## Single executables

Written by \`npm run bench:release\` on ${new Date().toISOString().slice(0, 10)}: release-build/bin/linux-x64 (Node's single
executable applications with the V8 code cache, add-ons loaded from the private cache) against the same
code run as \`node dist/src/cli/...\`; ${cpus().length} cores, Node ${process.version}, a noisy shared machine.

| measure | single executable | node dist/ | ratio |
| --- | --- | --- | --- |
${rows.join('\n')}`,
  );
  process.stdout.write(`${section}\n`);
}

main().catch((err: Error) => {
  process.stderr.write(`bench:release: ${err.message}\n`);
  process.exit(1);
});
