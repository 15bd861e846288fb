/** A step that did not finish in time; `step` names it for log lines and error messages. */
export class TimeoutError extends Error {
  constructor(readonly step: string, readonly ms: number, detail = '') {
    super(`${step} timed out after ${ms < 1000 ? `${Math.round(ms)}ms` : `${+(ms / 1000).toFixed(1)}s`}${detail}`);
  }
}

/**
 * Settles like `work`, or rejects with a TimeoutError after `ms` and calls `onTimeout` so the caller can
 * tear down whatever the step was waiting on (a socket, a channel).
 */
export function withTimeout<T>(work: Promise<T>, ms: number, step: string, onTimeout?: () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      onTimeout?.();
      reject(new TimeoutError(step, ms));
    }, Math.max(0, ms));
    work.then(
      (v) => { clearTimeout(timer); resolve(v); },
      (e) => { clearTimeout(timer); reject(e); },
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
