import type { EventEmitter } from 'node:events';
import { withTimeout } from '../timeout.js';
import { RemoteError } from './control-channel.js';

/** What the ssh2 patch adds to both ends' connections: global requests of any name, with data. */
export interface GlobalRequests {
  globalRequest(name: string, data: Buffer | undefined, cb?: (ok: boolean, data: Buffer | null) => void): void;
}

/**
 * RPort's request with an answer: its JSON (or undefined when empty); a refusal rejects with the peer's
 * reason, and the owner's 'close' (the connection ended) rejects at once.
 */
export function askGlobal(ssh: GlobalRequests, owner: EventEmitter, name: string, body: unknown, timeoutMs: number): Promise<unknown> {
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
