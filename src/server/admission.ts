import type { Socket } from 'node:net';
import { plainAddress } from '../shared/host-port.js';
import { deadline, type Deadline } from '../timeout.js';

export interface AdmissionLimits {
  /** [server] max_unauthenticated_connections */
  total: number;
  /** [server] max_unauthenticated_connections_per_address */
  perAddress: number;
  /** [server] client_login_timeout, counted from TCP accept */
  loginTimeoutMs: number;
}

export type AdmissionEvent =
  { kind: 'per_address' | 'total'; address: string } | { kind: 'timeout'; address: string; upgraded: boolean };

interface Pending {
  socket: Socket;
  address: string;
  timer: Deadline;
  upgraded: boolean;
}

const keyOf = (s: { remoteAddress?: string; remotePort?: number }) => `${s.remoteAddress}|${s.remotePort}`;

/**
 * Connections that have not logged in yet, from TCP accept to an accepted connection request: each has
 * client_login_timeout in all (HTTP upgrade, SSH identification, key exchange, auth, connection request),
 * and their number is bounded. An address over its share gets its new connections refused at once (a
 * single flooding address waits for its own to finish); when all addresses together are at the limit, the
 * oldest pending connection makes room, so a distributed flood of silent peers cannot keep real clients out.
 */
export class PendingConnections {
  /** Insertion order is age: the first entry is the oldest. */
  private readonly pending = new Map<string, Pending>();
  private readonly perAddress = new Map<string, number>();

  /** Every socket's 'close' listener (the socket is `this`). */
  private readonly releaseOnClose: (this: Socket) => void;

  constructor(
    private readonly limits: AdmissionLimits,
    private readonly report: (e: AdmissionEvent) => void,
  ) {
    // One listener shared by every socket, which reads its socket from `this`: no closure per connection.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const pending = this;
    this.releaseOnClose = function (this: Socket) {
      pending.release(this);
    };
  }

  get size(): number {
    return this.pending.size;
  }

  /** A new TCP connection; it is destroyed here when its address is over its share. */
  admit(socket: Socket): void {
    const address = plainAddress(socket.remoteAddress);
    if ((this.perAddress.get(address) ?? 0) >= this.limits.perAddress) {
      this.report({ kind: 'per_address', address });
      socket.destroy();
      return;
    }
    if (this.pending.size >= this.limits.total) {
      const [, oldest] = this.pending.entries().next().value!;
      this.report({ kind: 'total', address: oldest.address });
      this.drop(oldest);
    }
    const key = keyOf(socket);
    const entry: Pending = {
      socket,
      address,
      upgraded: false,
      timer: deadline(this.limits.loginTimeoutMs, 'login', () => {
        this.report({ kind: 'timeout', address, upgraded: entry.upgraded });
        this.drop(entry);
      }),
    };
    this.pending.set(key, entry);
    this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1);
    // One shared listener, not a closure here: that would keep `entry` (its timer and closures) for as
    // long as the connection lives, long after it logged in. 'close' comes once: on(), not once()'s wrapper.
    socket.on('close', this.releaseOnClose);
  }

  /** The connection completed its WebSocket upgrade (only for the log line of a timeout). */
  upgraded(s: { remoteAddress?: string; remotePort?: number }): void {
    const p = this.pending.get(keyOf(s));
    if (p) p.upgraded = true;
  }

  /** Logged in, or gone: no longer pending. Takes the TCP or the TLS socket. */
  release(s: { remoteAddress?: string; remotePort?: number }): void {
    const key = keyOf(s);
    const p = this.pending.get(key);
    if (!p) return;
    p.timer.cancel();
    this.pending.delete(key);
    const n = (this.perAddress.get(p.address) ?? 1) - 1;
    if (n > 0) this.perAddress.set(p.address, n);
    else this.perAddress.delete(p.address);
  }

  private drop(p: Pending): void {
    this.release(p.socket);
    p.socket.destroy();
  }
}
