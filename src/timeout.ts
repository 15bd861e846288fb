import { formatDuration } from './shared/duration.js';

/** setTimeout's limit (about 24.8 days): Node.js fires a longer timer after 1 ms, so deadline() waits in steps. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A step that did not finish in time; `step` names it for log lines and error messages. */
export class TimeoutError extends Error {
  constructor(
    readonly step: string,
    readonly ms: number,
    detail = '',
  ) {
    super(`${step} timed out after ${formatDuration(Math.round(ms))}${detail}`);
  }
}

export interface Deadline {
  /** The deadline no longer fires; harmless after it fired. */
  cancel(): void;
}

/**
 * The one timer for every bound: calls `onExpire` once with a TimeoutError naming `what` after `ms`,
 * unless cancelled first. Waits beyond MAX_TIMER_MS are reached in steps. `unref`: the wait alone does
 * not keep the process running (for timers of things that end with the process anyway).
 */
export function deadline(
  ms: number,
  what: string,
  onExpire: (err: TimeoutError) => void,
  o: { unref?: boolean } = {},
): Deadline {
  let left = Math.max(0, ms);
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    const step = Math.min(left, MAX_TIMER_MS);
    left -= step;
    timer = setTimeout(() => (left > 0 ? arm() : onExpire(new TimeoutError(what, ms))), step);
    if (o.unref) timer.unref();
  };
  arm();
  return { cancel: () => clearTimeout(timer) };
}

/**
 * Settles like `work`, or rejects with a TimeoutError after `ms` and calls `onTimeout` so the caller can
 * tear down whatever the step was waiting on (a socket, a channel).
 */
export function withTimeout<T>(work: Promise<T>, ms: number, step: string, onTimeout?: () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const d = deadline(ms, step, (err) => {
      onTimeout?.();
      reject(err);
    });
    work.then(
      (v) => {
        d.cancel();
        resolve(v);
      },
      (e) => {
        d.cancel();
        reject(e);
      },
    );
  });
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
