// npm run bench [-- --quick] [scenario ...]: each scenario against its anchors in the same run, a table,
// and, for a full run, BENCHMARKS.md rewritten with the figures, the ratios, the machine and the exact command.
import { spawnSync } from 'node:child_process';
import { cpus, loadavg, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { nativeAcceleration } from '../src/transport/native.js';
import { VERSION } from '../src/version.js';
import { ensurePrerequisites } from './lib/prerequisites.js';
import { writeKeepingSections, writeSection } from './lib/sections.js';
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
- Data path profile (\`perf record -g\` on rportd with \`--perf-basic-prof\`, one stream into the tunnel):
  before malloc_tune, 13% of rportd's samples were the kernel's page-fault handler and 17.5% a memmove
  that faulted (ssh2's channelData copying each 64 KiB chunk into a fresh packet, socket reads into fresh
  buffers): 181 page faults per MB. glibc gave freed heap back to the kernel after every GC, and the next
  buffers faulted it in again (costly on a VM). native/malloc_tune.c keeps up to 32 MiB of freed heap:
  3 faults per MB on rportd, 1 on rport.
- What still costs more than OpenSSH per GB: per 64 KiB packet rport allocates and copies about four
  times (the socket read into a fresh buffer; the copy into the SSH packet, since ssh2 encrypts in place;
  the WebSocket receiver's concatenation of frames that span two 64 KiB reads; the decrypted packet), and
  the garbage collector frees them. OpenSSH reads
  into a reused buffer and encrypts out of place into its output buffer. The design change that closes
  it: a data path that reuses buffers end to end (a socket \`onread\` with a reused buffer, encryption out
  of place from the source chunk into a reused ring via a patched ssh2 channelData and cipher, a direct
  WebSocket adapter writing frame header and packet with one writev), or the same in a small N-API module
  around OpenSSL's EVP AES-GCM.
- Fairness: a round-robin gate in src/transport/pipe.ts (a tunnel's chunk waits while the WebSocket holds
  over 1 MiB, waiting chunks released in arrival order once per event-loop turn) did not move fairness
  (0.15-0.39 with and without it on this machine) and was not kept. Per-stream timings show the spread
  starts where rportd reads the tunnel sockets: the time for the generator to get all of a stream into
  the tunnel ranged 0.4-6.2 s over the 100 streams (OpenSSH: 4.2-4.4 s). Each channel has an 8 MiB window,
  about a whole stream here, so nothing holds the first streams back; closing it needs the scheduler to
  pause reading the tunnel sockets (not only the channel writes) per turn, or a smaller per-channel
  window when many channels are busy, which the WAN figure (window / round trip) argues against.
- Idle client memory: bare Node 20 is 39-40 MiB RSS here (34 MiB of it file pages of the node binary).
  The client loads only ws, ssh2 (with bufferutil and cpu-features) and smol-toml, so there is nothing to
  load lazily; after a minute connected it is about 16 MiB anonymous and 44 MiB file pages (Node's own code
  touched by compiling and running it, shared and reclaimable). \`--max-semi-space-size=1\`, \`--lite-mode\`,
  \`--jitless\` and \`--max-old-space-size\` each moved it by 1 MiB or less. 40 MiB is bare Node's own
  figure: only a client not built on Node would meet it.
- Idle fleet and malloc_tune (2026-11-30): keeping freed heap costs idle memory. A/B at 1,000 idle clients (\`--quick fleet\`,
  same load): 71.7 KB per client with malloc_tune, 57.3 KB without (about 14 MiB kept); per client it
  shrinks as the fleet grows (32 MiB is 3.4 KB at 10,000). Since, malloc_tune gives the kept heap back
  (malloc_trim) every 20 s; one quick run with that gave 69.3 KB, so the kept heap is not the whole
  difference (single runs at this load differ by that much); not resolved in this change. The rest of the gap
  to 25 KB per client was not profiled in this change (handshakes also cost 2-3x the CPU of the 2026-11-23
  run, with and without malloc_tune: 6.8 vs 5.6 ms each in an A/B, so not from it).
- Noise (2026-11-30): two full runs 20 minutes apart on this machine (load average 6-11) gave rportd 1.56 and 2.66 CPU s
  per GB against sshd's 1.32 and 1.33, and rport 1.53 and 1.38 against ssh's 1.46 and 1.50. Steer by
  repeated runs, and by page faults per MB (/proc/<pid>/stat minflt), which the load does not move.
- Second pass on the data path (2026-11-30, \`--quick throughput latency\`, systems taking turns, load average
  3.4-8.5; the code tried is on branch perf2-rejected, neither change kept). rportd CPU s per GB (sshd in
  the same run in parentheses): with \`createWebSocketStream\` 4.39 (1.83), 3.27 (1.59), 3.28 (1.71), 1.45 (1.33),
  1.56 (1.49), 1.44 (1.29), 3.07 (1.52), median ratio 1.92x; with a direct Duplex (each 'message' pushed,
  ws paused when push() returns false, each write one ws.send, the write callback at once below 1 MiB
  in the socket, the socket corked until setImmediate so a turn's packets leave in one writev) 3.17 (1.47),
  3.42 (1.59), 2.71 (1.35), 2.43 (1.32), 2.33 (1.35), 3.02 (1.43), 2.73 (1.34), 2.66 (1.39), median
  ratio 2.02x; without the cork 3.33 (1.59); with the callback after each send (as ws does) 2.20 (1.24),
  2.45 (1.24). rport (client) 1.46-2.13 before, 1.38-1.88 after. Round trip, median of the runs' medians
  against OpenSSH's: 1.49x before (228 us), 1.38x after (178 us), single runs 1.13x-2.64x, so not a
  measured gain either. The Duplex, one syscall per packet and the callback timing are not where the CPU goes. The
  old path is bimodal (3 of 7 runs at 1.44-1.56, about sshd's figure; the others 3.07-4.39) and the adapter
  never reached the low mode in 11 runs (all three variants): what gives the low mode is the next thing
  to find before any further rewrite. Sampling rportd's /proc/<pid>/stat every 0.5 s over 7 more runs of
  the old path (one low, 1.39 vs sshd 1.38): page faults do not tell the modes apart (29k in the low run,
  28k-70k in the high ones); in the high runs rportd sits at a full core for seconds and moves less
  (141/205 MB/s into/out against 265/316 in the low run), so the next probe is GC time per mode
  (node --trace-gc) and what else ran on the cores then (this VM reports no steal time in
  /proc/stat), not allocation counts.
- Fairness, second try (same date): a read budget per tunnel socket (128 KiB per event-loop turn, then
  paused until setImmediate; libuv otherwise reads a ready socket up to 32 times, 2 MiB, per turn) gave
  0.18 against 0.12 without (one run each; OpenSSH 0.96 and 0.40, raw TCP 0.16 and 0.22) and 3.17 against
  2.43 rportd CPU s/GB; not kept. Raw TCP scoring 0.2 shows the measure itself: fastest / slowest time
  from one common start, with 100 connects, mostly times connection set-up when a stream takes well
  under a second; per-stream time from its own connect, or larger streams, would measure the scheduler.
- Handshakes have no same-run OpenSSH counterpart (an \`ssh\` process per connection measures process start-up);
  the anchor is the ssh2-over-ws prototype's figure from the anchors.
${notes.map((n) => `- ${n}`).join('\n')}
`;
const benchmarks = fileURLToPath(new URL('../../BENCHMARKS.md', import.meta.url));
// The cluster alone (it needs PostgreSQL and HAProxy) keeps its own section beside the full run's figures.
if (names.length === 1 && names[0] === 'cluster') {
  writeSection(benchmarks, 'cluster', `## Cluster (\`${command}\`, ${new Date().toISOString().slice(0, 10)})

Three rportd nodes on one private PostgreSQL behind HAProxy (all on 127.0.0.1, real processes; the clients
in one process), against one node on SQLite. Machine: ${machine.join('; ')}.

${table}

Connecting is CPU-bound (an SSH key exchange per client): on one machine the three nodes share its cores with
PostgreSQL, HAProxy and the fleet, so the connect time shows the cluster's overhead, not its capacity; on
separate machines each node takes its share of the fleet with its own cores and file descriptors.
`);
} else if (quick || names.length) {
  // A quick or partial run must not replace the full run's figures.
  process.stdout.write('BENCHMARKS.md kept: only a full run (npm run bench, every scenario) rewrites it\n');
  process.exit(0);
} else writeKeepingSections(benchmarks, doc);
process.stdout.write('BENCHMARKS.md written\n');
process.exit(0);
