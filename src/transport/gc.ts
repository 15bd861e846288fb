import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let done = false;

/**
 * Once per process, before the first connection: V8's young generation shrinks again once the process
 * is quiet (below). Turning incremental marking off here as well removed the doubled CPU per GB of
 * busy tunnels (BENCHMARKS.md), but V8 flags that change how it marks must be set before the heap is
 * used: set at run time, one test process died in V8 (unreachable code in ConcurrentMarking::RunMajor).
 * The single executables start with it (EXEC_ARGV in scripts/release/build.mjs).
 */
export function shrinkYoungGenerationWhenQuiet(): void {
  if (done) return;
  done = true;
  const collectYoung = youngGenerationCollector();
  if (collectYoung) {
    setInterval(() => {
      if (getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_size > YOUNG_GROWN_BYTES)
        collectYoung();
    }, YOUNG_CHECK_EVERY_MS).unref();
  }
}

/** Above its initial 1 MiB: grown under load. */
const YOUNG_GROWN_BYTES = 2 << 20;
/** V8 judges allocation over the last 5 s: a check this often lands a scavenge soon after a burst ends. */
const YOUNG_CHECK_EVERY_MS = 5_000;

/**
 * V8's young generation grows to 32 MiB under load (a fleet's handshakes, a busy tunnel) and shrinks only
 * at a scavenge that finds allocation slow, which an idle process, allocating little, reaches after
 * minutes: 32 KB per client of an idle fleet of 1,000. A scavenge every YOUNG_CHECK_EVERY_MS while it is
 * grown lets V8 shrink it once the process went quiet; under load it is one more of the many that V8 runs
 * anyway (a few ms), and none runs once it is small.
 * gc() is only exposed to contexts made while --expose-gc is set, so the flag is unset again at once.
 */
function youngGenerationCollector(): (() => void) | undefined {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as (o: { type: 'minor' }) => void;
    return () => gc({ type: 'minor' });
  } catch {
    return undefined;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
}
