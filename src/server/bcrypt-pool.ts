import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { BCRYPT_WORKER } from './bcrypt-worker-entry.js';

/** More queued comparisons than this and new ones are refused at once: a flood gets "busy", not a queue. */
export const MAX_QUEUED_CHECKS = 256;

/** The attempt could not be checked now because too many are waiting; not counted as a failed login. */
export class PoolBusyError extends Error {}

interface Job {
  id: number;
  password: string;
  hash: string;
  resolve(ok: boolean): void;
  reject(err: Error): void;
}

/**
 * bcrypt in worker threads (about 70 ms of CPU per check at cost 10), so a flood of login attempts cannot
 * stall keep-alives and tunnels on the event loop. At most `size` checks run at once; the rest queue up to
 * MAX_QUEUED_CHECKS. Workers start on first use and do not keep the process alive.
 */
export class BcryptPool {
  private readonly idle: Worker[] = [];
  private readonly running = new Map<Worker, Job>();
  private readonly queue: Job[] = [];
  private started = 0;
  private nextId = 1;

  constructor(private readonly size = Math.max(1, Math.min(4, availableParallelism() - 1))) {}

  compare(password: string, hash: string): Promise<boolean> {
    if (this.queue.length >= MAX_QUEUED_CHECKS)
      return Promise.reject(new PoolBusyError(`${MAX_QUEUED_CHECKS} password checks are already waiting`));
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextId++, password, hash, resolve, reject });
      this.dispatch();
    });
  }

  async close(): Promise<void> {
    const all = [...this.idle, ...this.running.keys()];
    this.idle.length = 0;
    await Promise.all(all.map((w) => w.terminate()));
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      const worker = this.idle.pop() ?? (this.started < this.size ? this.spawn() : undefined);
      if (!worker) return;
      const job = this.queue.shift()!;
      this.running.set(worker, job);
      worker.ref();
      worker.postMessage({ id: job.id, password: job.password, hash: job.hash });
    }
  }

  private spawn(): Worker {
    this.started++;
    const worker =
      BCRYPT_WORKER.code !== undefined
        ? new Worker(BCRYPT_WORKER.code, { eval: true })
        : new Worker(BCRYPT_WORKER.url!);
    worker.unref();
    worker.on('message', (m: { id: number; ok: boolean }) => {
      const job = this.running.get(worker);
      this.running.delete(worker);
      worker.unref();
      this.idle.push(worker);
      if (job?.id === m.id) job.resolve(m.ok);
      this.dispatch();
    });
    // A worker that dies fails its job (as a wrong password would) and is replaced on demand.
    worker.on('error', (err) => {
      this.running.get(worker)?.reject(err);
    });
    worker.on('exit', () => {
      this.running.get(worker)?.reject(new Error('password check worker exited'));
      this.running.delete(worker);
      const i = this.idle.indexOf(worker);
      if (i >= 0) this.idle.splice(i, 1);
      this.started--;
      this.dispatch();
    });
    return worker;
  }
}
