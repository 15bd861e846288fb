import { EventEmitter } from 'node:events';
import { withTimeout } from '../timeout.js';
import { RemoteError, type Handler } from './control-channel.js';

/** What the ssh2 patch adds to both ends' connections: global requests of any name, with data. */
export interface GlobalRequests {
  globalRequest(name: string, data: Buffer | undefined, cb?: (ok: boolean, data: Buffer | null) => void): void;
}

/**
 * RPort's request with an answer: its JSON (or undefined when empty); a refusal rejects with the peer's
 * reason, and the owner's 'close' (the connection ended) rejects at once.
 */
export function askGlobal(
  ssh: GlobalRequests,
  owner: EventEmitter,
  name: string,
  body: unknown,
  timeoutMs: number,
): Promise<unknown> {
  const answer = new Promise<unknown>((resolve, reject) => {
    const onClose = (err: Error) => reject(err);
    owner.once('close', onClose);
    ssh.globalRequest(name, body === undefined ? undefined : Buffer.from(JSON.stringify(body)), (ok, data) => {
      owner.off('close', onClose);
      const text = data ? data.toString('utf8') : '';
      if (!ok) return reject(new RemoteError(text || `${name} refused`));
      try {
        resolve(text ? JSON.parse(text) : undefined);
      } catch {
        reject(new RemoteError(`the answer to ${name} is not JSON`));
      }
    });
  });
  return withTimeout(answer, timeoutMs, `${name} request`);
}

/**
 * What both ends' adapters of RPort's protocol share, as rport's control channel looks to its users: the
 * handlers by method, the close state, and RPort's requests with an answer. Subclasses map methods to RPort's
 * messages in `request` and call `shutdown` when the connection ends.
 */
export abstract class GlobalRequestControl extends EventEmitter {
  protected readonly handlers = new Map<string, Handler>();
  protected closedWith: Error | undefined;

  constructor(protected readonly peer: GlobalRequests & Pick<EventEmitter, 'once'>) {
    super();
    this.setMaxListeners(0); // one close listener per request awaiting its answer
    peer.once('close', () => this.shutdown(new Error('connection closed')));
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  handle(method: string, handler: Handler): void {
    this.handlers.set(method, handler);
  }

  close(): void {
    this.shutdown(new Error('connection closed'));
  }

  protected ask(name: string, body: unknown, timeoutMs: number): Promise<unknown> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    return askGlobal(this.peer, this, name, body, timeoutMs);
  }

  protected shutdown(err: Error): void {
    if (this.closedWith) return;
    this.closedWith = err;
    this.emit('close', err);
  }
}
