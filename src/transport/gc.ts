import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let done = false;

/**
 * Once per process, before the first connection: V8 collects the old generation when it is full, in
 * one pause, instead of starting incremental marking by its own heuristics, and its young generation
 * shrinks again once the process is quiet (below). A tunnel at full speed frees
 * about 128 KiB of Buffers per 64 KiB carried; on a busy machine, in about a third of rportd's runs,
 * V8 then started incremental marking after nearly every scavenge: 35-70 mark-compacts per 512 MiB
 * that freed nothing (15 MB heap before and after), 30% of the process's samples in concurrent marking
 * and sweeping, and twice the CPU per GB. With marking started only by a full old generation: 1-3 per
 * run in every run measured (BENCHMARKS.md). The pause of a whole collection grows with the heap
 * (30 ms at 15 MB here), which incremental marking would have split up.
 */
export function tuneGarbageCollection(): void {
  if (done) return;
  done = true;
  setFlagsFromString('--no-incremental-marking');
  const collectYoung = youngGenerationCollector();
  if (collectYoung) {
    setInterval(() => {
      if (getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_size > YOUNG_GROWN_BYTES) collectYoung();
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

