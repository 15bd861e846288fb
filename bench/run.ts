// npm run bench [-- --quick] [scenario ...]: each scenario against its anchors in the same run, a table,
// and BENCHMARKS.md rewritten with the figures, the ratios, the machine and the exact command.
import { spawnSync } from 'node:child_process';
import { cpus, loadavg, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { nativeAcceleration } from '../src/transport/native.js';
import { VERSION } from '../src/version.js';
import { ensurePrerequisites } from './lib/prerequisites.js';
import { writeKeepingSections } from './lib/sections.js';
import { SCENARIOS, type Row, type ScenarioName } from './scenarios.js';

const args = process.argv.slice(2);
if (args.includes('--help')) {
  process.stdout.write(`npm run bench -- [--quick] [${Object.keys(SCENARIOS).join('|')} ...]\n  --quick: smaller sizes, under 2 minutes in all\n`);
  process.exit(0);
}
const quick = args.includes('--quick');
const names = args.filter((a) => !a.startsWith('--')) as ScenarioName[];
for (const n of names) {
  if (!(n in SCENARIOS)) {
    process.stderr.write(`unknown scenario "${n}": use ${Object.keys(SCENARIOS).join(', ')}\n`);
    process.exit(2);
  }
}
const chosen = names.length ? names : (Object.keys(SCENARIOS) as ScenarioName[]);

/** A tool's version line (ssh -V prints it on stderr). */
function version(cmd: string, a: string[]): string {
  const r = spawnSync(cmd, a, { encoding: 'utf8' });
  return r.error ? 'not installed' : `${r.stdout}${r.stderr}`.trim().split('\n')[0]!;
}

try {
  for (const line of ensurePrerequisites()) process.stdout.write(`${line}\n`);
} catch (err) {
  process.stderr.write(`npm run bench: ${(err as Error).message}\n`);
  process.exit(1);
}

const accel = nativeAcceleration();
const machine = [
  `${cpus().length} cores, ${cpus()[0]?.model.trim()}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB`,
  `Node ${process.version}; rport ${VERSION}; ssh2 native crypto ${accel.sshCrypto ? 'on' : 'OFF'}, bufferutil ${accel.bufferutil ? 'on' : 'OFF'}, ssh2 channel window ${accel.sshWindow >> 20} MiB, malloc_tune ${accel.heapKept ? 'on' : 'OFF'}`,
  `OpenSSH: ${version('ssh', ['-V'])}`,
];
const command = `npm run bench${args.length ? ` -- ${args.join(' ')}` : ''}`;
process.stdout.write(`${machine.join('\n')}\n${command}\n\n`);

// The machine is shared: the load before and after the run says how much the figures may be off.
const load = () => loadavg().map((x) => x.toFixed(2)).join(', ');
const loadBefore = load();
const runs = 5;
const rows: Row[] = [];
const notes: string[] = [];
const started = Date.now();
for (const name of chosen) {
  const t0 = Date.now();
  process.stdout.write(`== ${name}\n`);
  try {
    rows.push(...(await SCENARIOS[name]({ quick, runs, note: (l) => process.stdout.write(`   ${l}\n`) })));
  } catch (err) {
    const msg = (err as Error).message.split('\n')[0]!;
    rows.push({ scenario: name, measure: 'failed', rport: msg });
    notes.push(`${name} failed: ${msg}`);
    process.stdout.write(`   FAILED: ${msg}\n`);
  }
  process.stdout.write(`   (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
}

const header = ['Scenario', 'Measure', 'rport', 'OpenSSH ssh -R / anchor', 'raw TCP', 'rport vs anchor', 'Goal', 'Met'];
const table = [
  `| ${header.join(' | ')} |`,
  `| ${header.map(() => '---').join(' | ')} |`,
  ...rows.map((r) => `| ${[r.scenario, r.measure, r.rport, r.openssh ?? '', r.raw ?? '', r.ratio ?? '', r.goal ?? '', r.met === undefined ? '' : r.met ? 'yes' : '**no**'].join(' | ')} |`),
].join('\n');
process.stdout.write(`\n${table}\n\nin ${((Date.now() - started) / 1000).toFixed(0)} s\n`);

const doc = `# Benchmarks

Written by \`${command}\` on ${new Date().toISOString().slice(0, 10)} (${((Date.now() - started) / 1000).toFixed(0)} s; load average
${loadBefore} before, ${load()} after). Each figure is the median of ${runs} runs after a warm-up, measured in
the same run as its anchor: OpenSSH's \`ssh -R\` (aes128-gcm, a private sshd on 127.0.0.1 with its own host
key and config) and raw loopback TCP, the systems taking turns. Traffic is generated and counted by a
separate process (bench/traffic-proc.ts), the same for every system. CPU seconds per GB are read from
/proc/<pid>/stat (utime + stime) of each end's process tree (sshd with its per-connection children)
over the measured runs. The machine has 2 cores shared with other work: MB/s are noisy, CPU s/GB much less so.${quick ? '\n\n**Quick run** (`--quick`): smaller sizes; run `npm run bench` for the full figures.' : ''}

Machine: ${machine.join('; ')}.

${table}

Notes:
- WAN: these machines have no \`netem\` (\`tc qdisc add ... netem\` in a network namespace answers "Specified
  qdisc kind is unknown": no kernel modules), so the 50 ms round trip comes from a userspace relay that
  delays every chunk by 25 ms each way, between the SSH client and server of each system. It limits
  latency, not bandwidth. One channel's window bounds it at window / round trip: OpenSSH's 2 MiB gives
  at most 42 MB/s; rport's patched ssh2 window of 8 MiB gives up to 168 MB/s.
- Idle fleet: memory is read after rportd has been quiet for 25 s before the fleet connects and again at
  the end of the CPU window; in between V8 returns the handshakes' garbage to the system. The figure in
  parentheses is read 3 s after the last client connected, garbage included.
- Handshakes have no same-run OpenSSH counterpart (an \`ssh\` process per connection measures process start-up);
  the anchor is the ssh2-over-ws prototype's figure from the anchors.
${notes.map((n) => `- ${n}`).join('\n')}
`;
writeKeepingSections(fileURLToPath(new URL('../../BENCHMARKS.md', import.meta.url)), doc);
process.stdout.write('BENCHMARKS.md written\n');
process.exit(0);
