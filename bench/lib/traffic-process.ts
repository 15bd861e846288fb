import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Cleanup } from './setups.js';

const SCRIPT = fileURLToPath(new URL('../traffic-child.js', import.meta.url));

/** The target ports the traffic process serves: a sink, a source, an echo, and a sink for many streams. */
export interface TargetPorts {
  sink: number;
  source: number;
  echo: number;
  many: number;
}

/** The traffic generator and its targets in their own process (bench/traffic-child.ts), driven over IPC. */
export class TrafficProcess {
  private next = 0;
  private readonly pending = new Map<number, { resolve(v: any): void; reject(e: Error): void }>();
  private constructor(
    private readonly child: ChildProcess,
    readonly targets: TargetPorts,
  ) {
    child.on('message', (m: { id: number; result?: unknown; error?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.error !== undefined) p.reject(new Error(`traffic process: ${m.error}`));
      else p.resolve(m.result);
    });
    child.on('exit', (code, signal) => {
      for (const p of this.pending.values()) p.reject(new Error(`traffic process exited (${signal ?? code})`));
      this.pending.clear();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  static async start(c: Cleanup): Promise<TrafficProcess> {
    const child = fork(SCRIPT, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    c.add(
      () =>
        new Promise<void>((r) => {
          if (child.exitCode !== null || child.signalCode !== null) return r();
          child.once('exit', () => r());
          child.kill();
        }),
    );
    const targets = await new Promise<TargetPorts>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('traffic process not ready within 10 s')), 10_000);
      child.once('message', (m: { ready: TargetPorts }) => {
        clearTimeout(timer);
        resolve(m.ready);
      });
      child.once('exit', (code) => reject(new Error(`traffic process exited with ${code} before it was ready`)));
    });
    return new TrafficProcess(child, targets);
  }

  private call<T>(op: string, ...args: unknown[]): Promise<T> {
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.send({ id, op, args });
    });
  }

  /** Seconds to push `bytes` into `port` until the sink counted them all. */
  push(port: number, bytes: number): Promise<number> {
    return this.call('push', port, bytes);
  }
  /** Seconds to read `bytes` from `port` (the source sends exactly that many). */
  pull(port: number, bytes: number): Promise<number> {
    return this.call('pull', port, bytes);
  }
  /** Each 1-byte round trip through `port` (to the echo target), in microseconds. */
  ping(port: number, rounds: number): Promise<number[]> {
    return this.call('ping', port, rounds);
  }
  /**
   * `n` parallel streams of `each` bytes into `port` (to the many-streams sink): fairness from each
   * stream's connect to its end, and at the sink from each stream's first byte to its end.
   */
  parallel(
    port: number,
    n: number,
    each: number,
  ): Promise<{ seconds: number; fairness: number; sinkFairness: number }> {
    return this.call('parallel', port, n, each);
  }
}
