import { performance } from 'node:perf_hooks';
import { withTimeout } from '../timeout.js';

/**
 * A fault point for tests of hang detection: a step of this kind (dns, tcp, proxy, tls, websocket, ssh,
 * control, request, ping) never ends and never times out. Only a test sets it, in its own process or in an
 * rport it starts with harness/hang-request.ts preloaded; no config key, flag or variable reaches it.
 */
let hangingKind: string | undefined;

/** Sets the fault point above. */
export function injectHang(kind: string): void {
  hangingKind = kind;
}

/**
 * The connection loop's current step and the deadline by which it must end. The watchdog heartbeat reads
 * it: while the step is within its deadline the client is making progress; a step past its deadline has
 * hung (a promise that never settles, a blocked event loop), and the heartbeats stop.
 */
export class StepClock {
  private current = 'starting';
  private deadlineAt = Infinity;

  get step(): string {
    return this.current;
  }

  begin(step: string, timeoutMs: number): void {
    this.current = step;
    this.deadlineAt = performance.now() + timeoutMs;
  }

  withinDeadline(graceMs: number): boolean {
    return performance.now() <= this.deadlineAt + graceMs;
  }

  /** Runs one step under its own timeout; `onTimeout` tears down what the step was waiting on. */
  run<T>(kind: string, step: string, timeoutMs: number, work: () => Promise<T>, onTimeout?: () => void): Promise<T> {
    this.begin(step, timeoutMs);
    if (hangingKind === kind) return new Promise<T>(() => {}); // the injected fault: no timer, no end
    return withTimeout(work(), timeoutMs, step, onTimeout);
  }
}
