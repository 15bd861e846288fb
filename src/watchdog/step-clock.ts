import { performance } from 'node:perf_hooks';
import { withTimeout } from '../timeout.js';

/**
 * The connection loop's current step and the deadline by which it must end. The watchdog heartbeat reads
 * it: while the step is within its deadline the client is making progress; a step past its deadline has
 * hung (a promise that never settles, a blocked event loop), and the heartbeats stop.
 */
export class StepClock {
  private current = 'starting';
  private deadlineAt = Infinity;

  /**
   * A fault point for tests of hang detection: RPORT_TEST_HANG_STEP names a step kind (dns, tcp, proxy,
   * tls, websocket, ssh, control, request, ping) that then never ends and never times out.
   */
  constructor(private readonly hangStep: string | undefined = process.env.RPORT_TEST_HANG_STEP) {}

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
    if (this.hangStep === kind) return new Promise<T>(() => {}); // the injected fault: no timer, no end
    return withTimeout(work(), timeoutMs, step, onTimeout);
  }
}
