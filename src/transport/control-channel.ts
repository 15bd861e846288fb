import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { errorMessage, escapeControls } from '../log.js';
import { withTimeout } from '../timeout.js';

// Newline-delimited JSON over one SSH channel. A request is {id, method, params}; its answer
// {id, result} or {id, error}. A line longer than this, or one that is not JSON, ends the channel:
// a peer that sends garbage is not worth parsing further. The largest message is a connection request
// (256 remotes and 100 tags of 256 characters each).
export const MAX_LINE = 256 << 10;

export type Handler = (params: unknown) => unknown;

/**
 * What the server's parts (tunnels, jobs, sessions) use of a client's connection: requests by method both
 * ways. A ControlChannel for rport's own channel, an RPortRequests for RPort's global requests.
 */
export interface Control extends EventEmitter {
  readonly closed: boolean;
  handle(method: string, handler: Handler): void;
  request<T>(method: string, params: unknown, timeoutMs: number): Promise<T>;
  close(): void;
}

/** Messages a peer may send: a token bucket refilled at perSecond, holding up to twice that. */
export class RateBucket {
  private allowance: number;
  private refilledAt = performance.now();

  constructor(readonly perSecond: number) {
    this.allowance = 2 * perSecond;
  }

  /** Takes one message; false when the peer is over the rate. */
  take(): boolean {
    if (this.perSecond === Infinity) return true;
    const now = performance.now();
    this.allowance = Math.min(2 * this.perSecond, this.allowance + ((now - this.refilledAt) / 1000) * this.perSecond);
    this.refilledAt = now;
    if (this.allowance < 1) return false;
    this.allowance--;
    return true;
  }
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
}

/** The peer answered a request with an error (for example a refused connection request). */
export class RemoteError extends Error {}

/** A peer's error value as one readable line: it may be blank, not a string, or hold newlines. */
function remoteErrorText(error: unknown): string {
  const text = typeof error === 'string' ? error : (JSON.stringify(error) ?? '');
  return text.trim() ? escapeControls(text) : 'the peer refused the request without saying why';
}

export class ControlChannel extends EventEmitter implements Control {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly handlers = new Map<string, Handler>();
  private buffered = '';
  private closedWith: Error | undefined;
  private readonly rate: RateBucket;

  /** messagesPerSecond: more than that from the peer, sustained, ends the channel (a flood is not a client). */
  constructor(
    private readonly stream: Duplex,
    private readonly messagesPerSecond = Infinity,
  ) {
    super();
    this.rate = new RateBucket(messagesPerSecond);
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => this.receive(chunk));
    stream.on('error', (err: Error) => this.shutdown(err));
    stream.on('close', () => this.shutdown(new Error('control channel closed')));
    stream.on('end', () => this.shutdown(new Error('control channel closed by the peer')));
  }

  /** Whether the channel ended (the peer's flood or garbage closes it): for tests that drive it. */
  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  handle(method: string, handler: Handler): void {
    this.handlers.set(method, handler);
  }

  request<T>(method: string, params: unknown, timeoutMs: number): Promise<T> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const id = this.nextId++;
    const answer = new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
    });
    this.send({ id, method, params });
    return withTimeout(answer, timeoutMs, `${method} request`, () => this.pending.delete(id));
  }

  close(): void {
    this.shutdown(new Error('control channel closed'));
  }

  private send(msg: object): void {
    if (!this.closedWith) this.stream.write(JSON.stringify(msg) + '\n');
  }

  private receive(chunk: string): void {
    this.buffered += chunk;
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      if (line) this.dispatch(line);
      if (this.closedWith) return;
    }
    if (this.buffered.length > MAX_LINE)
      this.shutdown(new Error(`control message over ${MAX_LINE >> 10} KiB from the peer`));
  }

  private dispatch(line: string): void {
    if (!this.rate.take())
      return this.shutdown(new Error(`more than ${this.messagesPerSecond} control messages a second from the peer`));
    this.emit('activity');
    let msg: { id?: unknown; method?: unknown; params?: unknown; result?: unknown; error?: unknown };
    try {
      msg = JSON.parse(line);
    } catch {
      return this.shutdown(new Error('control message from the peer is not JSON'));
    }
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg))
      return this.shutdown(new Error('control message from the peer is not a JSON object'));
    if (typeof msg.method === 'string') {
      void this.answer(msg.id, msg.method, msg.params);
      return;
    }
    const p = typeof msg.id === 'number' ? this.pending.get(msg.id) : undefined;
    if (!p) return; // an answer that arrived after its request timed out
    this.pending.delete(msg.id as number);
    if (msg.error !== undefined) p.reject(new RemoteError(remoteErrorText(msg.error)));
    else p.resolve(msg.result);
  }

  private async answer(id: unknown, method: string, params: unknown): Promise<void> {
    const handler = this.handlers.get(method);
    if (id === undefined) {
      // A notification has nobody to answer: a handler's failure (a refused connection request sent
      // without an id) must not become an unhandled rejection, which would end the process.
      try {
        await handler?.(params);
      } catch {
        // nobody to tell (the connection request handler logs and counts its refusals itself)
      }
      return;
    }
    if (!handler) return this.send({ id, error: `unknown method ${method}` });
    try {
      this.send({ id, result: (await handler(params)) ?? null });
    } catch (err) {
      this.send({ id, error: errorMessage(err) });
    }
  }

  private shutdown(err: Error): void {
    if (this.closedWith) return;
    this.closedWith = err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.stream.destroy();
    this.emit('close', err);
  }
}
