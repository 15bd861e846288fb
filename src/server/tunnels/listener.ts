import { randomUUID } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { errorMessage, type Logger } from '../../log.js';
import { formatHostPort, plainAddress, type HostPort } from '../../shared/host-port.js';
import { deadline } from '../../timeout.js';
import { pipeSocketChannel } from '../../transport/pipe.js';
import type { TunnelRecords } from '../store/tunnels.js';
import type { TunnelTimers } from './timers.js';
import { TunnelError, type ClientLink, type Tunnel } from './tunnel.js';

/** Bound on opening one forwarded channel. */
export const CHANNEL_OPEN_TIMEOUT_MS = 15_000;
/** Random ports tried from used_ports before giving up. */
const PORT_TRIES = 50;

function listenOn(server: Server, a: HostPort): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(a.port, a.host, () => {
      // From now on an 'error' is a failed accept(): that connection is lost, the tunnel keeps listening.
      server.off('error', onError).on('error', () => undefined);
      resolve();
    });
  });
}

/**
 * A tunnel's port on this server: claimed across the cluster, listened on, and each connection to it
 * carried over one channel to the client, its bytes counted.
 */
export class TunnelListeners {
  constructor(
    private readonly claims: Pick<TunnelRecords, 'claimPort' | 'releasePort'>,
    private readonly nodeId: string,
    private readonly timers: TunnelTimers,
    /** The client's link now (it may have gone or connected again since the tunnel listened). */
    private readonly linkOf: (clientId: string) => ClientLink | undefined,
    private readonly log: Logger,
  ) {}

  /** Listens on the tunnel's port, or on one of the free ports when it has none yet; sets its port. */
  async listen(t: Tunnel, free: () => number[]): Promise<Server> {
    const fixed = t.local.port;
    const candidates = fixed ? [] : free();
    const ports = fixed
      ? [fixed]
      : Array.from(
          { length: Math.min(PORT_TRIES, candidates.length) },
          () => candidates[Math.floor(Math.random() * candidates.length)]!,
        );
    for (const port of ports) {
      if (!(await this.claim(port, t))) {
        if (fixed)
          throw new TunnelError(
            'port_unavailable',
            `cannot listen on ${formatHostPort({ host: t.local.host, port })}: another tunnel of the cluster holds the port`,
          );
        continue;
      }
      // allowHalfOpen: a side that finished sending (FIN) may still receive the answer, as over plain TCP.
      const server = createServer({ noDelay: true, allowHalfOpen: true }, (sock) => this.carry(t, sock));
      try {
        await listenOn(server, { host: t.local.host, port });
        t.local = { host: t.local.host, port };
        return server;
      } catch (err) {
        this.release(port, t.claim);
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EADDRINUSE' || fixed) {
          throw new TunnelError(
            'port_unavailable',
            `cannot listen on ${formatHostPort({ host: t.local.host, port })}: ${code === 'EADDRINUSE' ? 'the port is in use' : (code ?? errorMessage(err))}`,
          );
        }
      }
    }
    throw new TunnelError('port_unavailable', 'no free port left in [server] used_ports');
  }

  /** Stops listening (the port is free at once) and cuts its open connections short: a reset, not a clean end. */
  close(t: Tunnel): void {
    this.timers.cancelIdle(t);
    if (t.listener) {
      t.listener.close();
      this.release(t.local.port, t.claim);
    }
    t.listener = undefined;
    t.node = undefined;
    for (const s of t.sockets) s.resetAndDestroy();
  }

  /** Frees a port claim; one that fails (the database is away) is taken back by its tunnel or freed when this node starts again. */
  private release(port: number, claim: string): void {
    this.claims
      .releasePort(port, claim)
      .catch((err) => this.log.debug(`port ${port}: claim not released: ${errorMessage(err)}`));
  }

  /** The port is claimed in the store (unique across the cluster) before listening on it. */
  private async claim(port: number, t: Tunnel): Promise<boolean> {
    try {
      t.claim = randomUUID();
      return await this.claims.claimPort(port, t.id, this.nodeId, t.claim);
    } catch (err) {
      throw new TunnelError(
        'database_unavailable',
        `port ${port} cannot be claimed: the registry database is out of reach (${errorMessage(err)}); try again when it is back`,
      );
    }
  }

  /** One TCP connection to the tunnel's port: one forwarded-tcpip channel to the client, piped both ways. */
  private carry(t: Tunnel, sock: Socket): void {
    const ip = plainAddress(sock.remoteAddress);
    if (!t.aclRules.allows(ip)) {
      this.log.warn(`tunnel ${t.id}: refused a connection from ${ip}: not in its acl`);
      sock.destroy();
      return;
    }
    const link = this.linkOf(t.clientId);
    if (!link) return void sock.destroy();
    t.sockets.add(sock);
    t.connections++;
    this.timers.cancelIdle(t);
    sock.on('close', () => {
      t.sockets.delete(sock);
      this.timers.armIdle(t);
    });
    sock.on('error', () => sock.destroy());
    sock.pause();
    const answer = deadline(CHANNEL_OPEN_TIMEOUT_MS, 'forwarded channel', () => sock.resetAndDestroy());
    link.forward(t.id, ip, sock.remotePort ?? 0, (err, channel) => {
      answer.cancel();
      if (err) {
        this.log.warn(
          `tunnel ${t.id}: client ${t.clientId} could not reach ${formatHostPort(t.remote)} for ${ip}: ${errorMessage(err)}`,
        );
        return void sock.resetAndDestroy(); // as the target's refusal would be
      }
      if (sock.destroyed) return void channel.close();
      sock.on('data', (b: Buffer) => (t.bytesIn += b.length));
      channel.on('data', (b: Buffer) => (t.bytesOut += b.length));
      pipeSocketChannel(sock, channel);
    });
  }
}
