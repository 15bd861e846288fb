// npm run bench [-- --quick] [scenario ...]: each scenario against its anchors in the same run, a table,
// and, for a full run, BENCHMARKS.md rewritten with the figures, the ratios, the machine and the exact command.
import { spawnSync } from 'node:child_process';
import { cpus, loadavg, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { nativeAcceleration } from '../src/transport/acceleration.js';
import { VERSION } from '../src/version.js';
import { ensurePrerequisites } from './lib/prerequisites.js';
import { writeKeepingSections, writeSection } from './lib/sections.js';
import { SCENARIOS, type Row, type ScenarioName } from './scenarios.js';

const args = process.argv.slice(2);
if (args.includes('--help')) {
  process.stdout.write(
    `npm run bench -- [--quick] [${Object.keys(SCENARIOS).join('|')} ...]\n  --quick: smaller sizes, under 2 minutes in all\n`,
  );
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
  `Node ${process.version}; rport ${VERSION}; ssh2 native crypto ${accel.sshCrypto ? 'on' : 'OFF'}, bufferutil ${accel.bufferutil ? 'on' : 'OFF'}, ssh2 channel windows up to ${accel.sshWindow >> 20} MiB, malloc_tune ${accel.heapKept ? 'on' : 'OFF'}`,
  `OpenSSH: ${version('ssh', ['-V'])}`,
];
const command = `npm run bench${args.length ? ` -- ${args.join(' ')}` : ''}`;
process.stdout.write(`${machine.join('\n')}\n${command}\n\n`);

// The machine is shared: the load before and after the run says how much the figures may be off.
const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(', ');
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

const header = [
  'Scenario',
  'Measure',
  'rport',
  'OpenSSH ssh -R / anchor',
  'openrport 0.9.13 pair',
  'raw TCP',
  'rport vs anchor',
  'Goal',
  'Met',
];
const table = [
  `| ${header.join(' | ')} |`,
  `| ${header.map(() => '---').join(' | ')} |`,
  ...rows.map(
    (r) =>
      `| ${[r.scenario, r.measure, r.rport, r.openssh ?? '', r.openrport ?? '', r.raw ?? '', r.ratio ?? '', r.goal ?? '', r.met === undefined ? '' : r.met ? 'yes' : '**no**'].join(' | ')} |`,
  ),
].join('\n');
process.stdout.write(`\n${table}\n\nin ${((Date.now() - started) / 1000).toFixed(0)} s\n`);

const doc = `# Benchmarks

Written by \`${command}\` on ${new Date().toISOString().slice(0, 10)} (${((Date.now() - started) / 1000).toFixed(0)} s; load average
${loadBefore} before, ${load()} after). Each figure is the median of ${runs} runs after a warm-up, measured in
the same run as its anchor: OpenSSH's \`ssh -R\` (aes128-gcm, a private sshd on 127.0.0.1 with its own host
key and config) and raw loopback TCP, the systems taking turns; beside them the real openrport 0.9.13 pair
(its rportd and client from ../shared/peers/openrport, a tunnel made through its API), what an RPort user runs
today: throughput, round trips and idle memory (a column that says "not run" when the binaries are absent). Traffic is generated and counted by a
separate process (bench/traffic-child.ts), the same for every system. CPU seconds per GB are read from
/proc/<pid>/stat (utime + stime) of each end's process tree (sshd with its per-connection children)
over the measured runs. The machine has 2 cores shared with other work: MB/s are noisy, CPU s/GB much less so.${quick ? '\n\n**Quick run** (`--quick`): smaller sizes; run `npm run bench` for the full figures.' : ''}

Machine: ${machine.join('; ')}.

${table}

Notes:
- WAN: these machines have no \`netem\` (\`tc qdisc add ... netem\` in a network namespace answers "Specified
  qdisc kind is unknown": no kernel modules), so the 50 ms round trip comes from a userspace relay that
  delays every chunk by 25 ms each way, between the SSH client and server of each system. It limits
  latency, not bandwidth. One channel's window bounds it at window / round trip: OpenSSH's 2 MiB gives
  at most 42 MB/s; rport's patched ssh2 windows grow from 2 to 16 MiB while the reader keeps up, up to 335
  MB/s (a quick run's 48 MiB stream is mostly the growth; the full run's 256 MiB is not).
- Idle fleet: memory is read after rportd has been quiet for 25 s before the fleet connects and again at
  the end of the CPU window; in between V8 returns the handshakes' garbage to the system. The figure in
  parentheses is read 3 s after the last client connected, garbage included.
- Data path profile (\`perf record -g\` on rportd with \`--perf-basic-prof\`, one stream into the tunnel):
  before malloc_tune, 13% of rportd's samples were the kernel's page-fault handler and 17.5% a memmove
  that faulted (ssh2's channelData copying each 64 KiB chunk into a fresh packet, socket reads into fresh
  buffers): 181 page faults per MB. glibc gave freed heap back to the kernel after every GC, and the next
  buffers faulted it in again (costly on a VM). addons/malloc_tune.c keeps up to 32 MiB of freed heap:
  3 faults per MB on rportd, 1 on rport.
- CPU per GB, the two modes (2026-11-30, third pass; found with \`perf\`, \`--trace-gc\`, \`--trace-gc-nvp\` and
  \`--trace-incremental-marking\` on rportd, one stream of 256 MiB each way, 2 runs per process): rportd's CPU per
  GB was bimodal per process, not per run (all runs of one process low, about sshd's figure, or all high, 2-3x),
  and it was full garbage collections. In a high process 30% of rportd's perf samples were V8's concurrent
  marking and sweeping (\`ConcurrentMarking::RunMajor\` 13%, the marking visitor 6%, \`Sweeper::RawSweep\` 4%;
  under 1% in a low one), and the trace showed 35-70 mark-compacts per 512 MiB that freed nothing (a 15 MB heap
  before and after) against 2 in a low process: a tunnel frees about 128 KiB of Buffers per 64 KiB carried, so
  scavenges are forced by "external memory pressure", and after each V8 started incremental marking
  ("Start (allocation limit)") with the old generation at half its limit. Two busy loops on the machine (the load
  these figures were taken under before) made 1 to 3 of every 4 processes high. What did not remove it, each in
  4-6 processes under that load: \`--no-concurrent-array-buffer-sweeping\`, \`--max-semi-space-size=1\`, a semi-space
  that does not grow, \`--no-allocation-site-pretenuring\`, V8's percent triggers for marking (all high), a free
  list for ssh2's 64 KiB packets (3 of 4 high), 256 KiB packets gathered from a turn's reads (4 writes per MiB
  instead of 16, no CPU gain: the cost is per byte, not per packet). What did: \`--no-incremental-marking\`
  (set with v8.setFlagsFromString before the first tunnel): 1-3 mark-compacts in every one of 16 processes,
  rportd 1.3-2.6 CPU s per GB under that load against 2.8-4.0 in the high processes without it. Not kept: a
  test process that set it while V8 was marking died in V8 ("unreachable code" in
  \`ConcurrentMarking::RunMajor\`), such flags are safe only on the command line, and the single executables
  (what the packages install) take no V8 flags there. What closes it without a flag is the allocation-free data
  path below: the forced scavenges come from the Buffers each chunk allocates.
- What still costs more than OpenSSH per GB, in the low mode: the per-byte work, not the per-packet work. Each
  64 KiB goes through about two fresh Buffers per end (the socket read, the SSH packet or the WebSocket
  receiver's concatenation of a frame that spans two reads) and a copy into each, besides AES-GCM and the
  kernel's two copies; OpenSSH reads into a reused buffer and encrypts out of place into its output buffer.
  The design change that closes it: a data path that allocates nothing per chunk (reads into reused buffers,
  which Node 20 offers with \`onread\` only for sockets it connects, not for accepted ones; encryption out of
  place into a reused ring), or that path as a small native module around OpenSSL's EVP AES-GCM and the two
  sockets, with the JavaScript path as the fallback.
- Backpressure (same date): ssh2 writes every packet its channel windows allow without looking at the stream's
  backpressure, so a client that stopped reading made rportd read each tunnel connection into its heap up to the
  8 MiB window it then had (16 connections: +148 MiB, test/backpressure.test.ts). Tunnels now stop reading while their
  connection's WebSocket holds 256 KiB and resume in turn (src/transport/ws-stream.ts); the data waits in kernel
  buffers and TCP slows the senders. Throughput did not change measurably; 100 streams 274-296 against 265-266 MB/s
  in two quick runs each.
- Fairness: now timed from each stream's own connect to its end. Raw TCP still scores about 0.2 (quick runs:
  0.18-0.20; OpenSSH 0.77-0.95, rport 0.15-0.22), so the measure still mostly shows the generator and sink (one
  process serving 100 sockets, kernel buffers that take a whole 2-10 MiB stream at once) for everything that is
  not itself the bottleneck; OpenSSH scores high because it is the bottleneck and serves its channels in turn.
  Two schedulers tried before (a gate releasing waiting chunks once per turn; a read budget of 128 KiB per socket
  per turn) did not move it either. The bench now also reports fairness at the sink, each stream from its first
  byte to its end (quick runs: OpenSSH 0.34-0.91, rport 0.07-0.13, raw TCP 0.02): rport delivers streams in
  bursts, not in turns. libuv reads a ready socket up to 32 times (2 MiB) per event-loop turn, a whole quick
  stream, and the WebSocket gate waits only when the WebSocket cannot write, which on loopback is rare; the read
  budget again (128 KiB per socket per turn, then setImmediate) gave 0.19 against 0.13 at the sink and 0.30
  against 0.18 from connect in one quick run each: better, far from 0.8, not kept. The design change: a
  scheduler per connection that takes one packet from each busy channel in turn (deficit round robin), with
  what waits kept in the process rather than in the kernel (TCP_NOTSENT_LOWAT on the WebSocket's socket, so the
  kernel no longer takes megabytes of one stream at once and the turns decide the order on the wire).
- WAN and the window (same date): the window bounds one channel (window / round trip). A fixed 16 MiB window gave
  134.0 MB/s against OpenSSH's 34.8 in \`--quick wan\` (84.2 MB/s with 8 MiB), but a channel's window is also what
  its receiver must take and hold when the local reader is slow: ssh2 gave credit while up to a whole window
  sat unread (its read buffer's high-water mark was the window), so 16 tunnel users who stopped reading made
  rportd hold 314 MiB. Now a window starts at 2 MiB and doubles to 16 MiB only while the reader has nothing
  unread, credit stops once 64 KiB waits unread, and one connection's windows grow to 64 MiB in all: the same
  16 readers cost 65 MiB (test/backpressure.test.ts), and \`npm run bench -- wan\` gave 160.9 MB/s against
  OpenSSH's 35.4 (4.5x).
- Idle client memory: bare Node 20 is 39-40 MiB RSS here (34 MiB of it file pages of the node binary).
  The client loads only ws, ssh2 (with bufferutil and cpu-features) and smol-toml, so there is nothing to
  load lazily; after a minute connected it is about 16 MiB anonymous and 44 MiB file pages (Node's own code
  touched by compiling and running it, shared and reclaimable). \`--max-semi-space-size=1\`, \`--lite-mode\`,
  \`--jitless\` and \`--max-old-space-size\` each moved it by 1 MiB or less. 40 MiB is bare Node's own
  figure: only a client not built on Node would meet it.
- Idle fleet (2026-11-30, heap snapshots of rportd at 0 and 1,000 idle clients, /proc/<pid>/smaps and
  mallinfo2): of 69.5 KB per client (\`--quick fleet\`), about 31 KB was V8's young generation, grown to 2 x 16 MiB
  by the handshakes and not shrunk while the process stayed quiet (a fixed 32 MB: 3 KB per client at 10,000),
  22 KB the old generation, 10-14 KB malloc. Fixed: a minor GC every 5 s while the young generation is over 2 MiB
  lets V8 shrink it (src/transport/gc.ts); ssh2 dropped the key exchange's \`finish\` closure (the shared secret,
  a slice pinning an 8 KiB pool slab) and the X25519 keys after the handshake (patch); the upgrade request and
  the login deadline's timer are no longer kept by per-connection closures. Live heap 24.8 -> 20.2 KB per
  client, \`--quick fleet\` 30.8 and 37.8 KB in two runs; the full run of 4ec8c1f 36.8 KB at 5,000 and 35.8 KB at 10,000
  (38.4 and 39.0 before). What remains per client: ws's WebSocket (4.0 KB, 2.7 of
  it its listener table), ws's stream wrapper (2.0 KB), net.Socket (1.9 KB), ssh2's Protocol (4.7 KB, with 1 KB
  of per-connection handler closures), Client, Channel and the control channel (5.4 KB), two OpenSSL AES-GCM
  contexts and malloc fragmentation (5-8 KB). The design change: one adapter between the socket and ssh2
  instead of four stream layers (ws Receiver, ws stream, ssh2 Channel), handlers built once per server in
  ssh2 instead of per connection.
- Round trip (2026-11-30, after the full run of 4ec8c1f, a quiet machine, 5 x 5000 pings each): rport median 115 us
  against OpenSSH's 114 and 123, p99 288-348 us against 209-255. CPU per round trip from /proc: rportd 67 us
  against sshd's 52-58, rport 65 against ssh's 42-46. \`perf record -g\` on both rport ends while pinging: 59% of
  samples in the kernel (28% under \`epoll_pwait\`: the wakeup of each end, twice per round trip, as for
  OpenSSH's), the JavaScript spread thin over the stream layers (calls, megamorphic loads, typed array creation,
  no function above 1.5%). Young-generation GC is not the tail: 64 MiB semi-spaces (a quarter of the scavenges)
  left p99 where it was (540-757 against 407-871 us in three pairs). On a loaded machine each extra microsecond of
  CPU per hop shows in the round trip (that full run: 187 against 162 us). The design change is the one for
  throughput: fewer layers between the socket and the cipher (ws Receiver, ws's stream, ssh2's parser and
  Channel, the tunnel socket), ideally one native path.
- The full run of 2026-11-30 (commit 4ec8c1f): its rportd for the throughput scenario was in the high GC mode
  described above (3.33 CPU s per GB, all its runs); quick runs on a quiet machine the same day gave 1.15-1.75 for rportd against sshd's 1.23-1.56,
  and 429 / 424 MB/s against 521 / 409 into / out of the tunnel.
- Handshakes have no same-run OpenSSH counterpart (an \`ssh\` process per connection measures process start-up);
  the anchor is the ssh2-over-ws prototype's figure from the anchors.
${notes.map((n) => `- ${n}`).join('\n')}
`;
const benchmarks = fileURLToPath(new URL('../../BENCHMARKS.md', import.meta.url));
// The cluster alone (it needs PostgreSQL and HAProxy) keeps its own section beside the full run's figures.
if (names.length === 1 && names[0] === 'cluster') {
  writeSection(
    benchmarks,
    'cluster',
    `## Cluster (\`${command}\`, ${new Date().toISOString().slice(0, 10)})

Three rportd nodes on one private PostgreSQL behind HAProxy (all on 127.0.0.1, real processes; the clients
in one process), against one node on SQLite. Machine: ${machine.join('; ')}.

${table}

Connecting is CPU-bound (an SSH key exchange per client): on one machine the three nodes share its cores with
PostgreSQL, HAProxy and the fleet, so the connect time shows the cluster's overhead, not its capacity; on
separate machines each node takes its share of the fleet with its own cores and file descriptors.
`,
  );
} else if (quick || names.length) {
  // A quick or partial run must not replace the full run's figures.
  process.stdout.write('BENCHMARKS.md kept: only a full run (npm run bench, every scenario) rewrites it\n');
  process.exit(0);
} else writeKeepingSections(benchmarks, doc);
process.stdout.write('BENCHMARKS.md written\n');
process.exit(0);
