import { setFlagsFromString } from 'node:v8';

let done = false;

/**
 * Once per process, before the first tunnel: V8 collects the old generation when it is full, in one
 * pause, instead of starting incremental marking by its own heuristics. A tunnel at full speed frees
 * about 128 KiB of Buffers per 64 KiB carried; on a busy machine, in about a third of rportd's runs,
 * V8 then started incremental marking after nearly every scavenge: 35-70 mark-compacts per 512 MiB
 * that freed nothing (15 MB heap before and after), 30% of the process's samples in concurrent marking
 * and sweeping, and twice the CPU per GB. With marking started only by a full old generation: 1-3 per
 * run in every run measured (BENCHMARKS.md). The pause of a whole collection grows with the heap
 * (30 ms at 15 MB here), which incremental marking would have split up.
 */
export function collectOnlyWhenFull(): void {
  if (done) return;
  done = true;
  setFlagsFromString('--no-incremental-marking');
}
