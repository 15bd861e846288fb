import { readSmallFile, writeFileAtomic } from '../files.js';

/** What rport-watchdog remembers between checks, also across --once runs from a scheduler. */
export interface Memory {
  /** Hung verdicts in a row. */
  strikes: number;
  /** Unix seconds of the restarts it made. */
  restarts: number[];
}

/**
 * It lives beside state.json, in a folder the client's user can write: whatever is found there (a FIFO, a
 * huge file) is read safely, and anything odd means starting afresh.
 */
export function loadMemory(path: string): Memory {
  try {
    const m = JSON.parse(readSmallFile(path, 64 * 1024)) as Partial<Memory>;
    return {
      strikes: Number.isInteger(m.strikes) ? m.strikes! : 0,
      restarts: Array.isArray(m.restarts) ? m.restarts.filter((t): t is number => typeof t === 'number') : [],
    };
  } catch {
    return { strikes: 0, restarts: [] };
  }
}

/** Atomic, like state.json; a failure is returned, not thrown: the supervisor goes on without memory. */
export function saveMemory(path: string, m: Memory): string | undefined {
  try {
    writeFileAtomic(path, JSON.stringify(m) + '\n', { mode: 0o644 });
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
}
