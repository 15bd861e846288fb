import { errorMessage, type Logger } from '../../log.js';
import { formatDuration } from '../../shared/duration.js';
import { deadline, type Deadline } from '../../timeout.js';
import type { Tunnel } from './tunnel.js';

/** Deletes a tunnel; resolves false when it was gone already. */
export type Expire = (clientId: string, tunnelId: string) => Promise<boolean>;

/**
 * The clocks that end tunnels: idle_timeout (no connection for that long) and an API tunnel's auto-close
 * time. Both run in the server whether the API runs or not: restored tunnels listen again either way.
 */
export class TunnelTimers {
  private readonly autoClose = new Map<string, Deadline>();

  constructor(
    private readonly expire: Expire,
    private readonly log: Logger,
  ) {}

  /** Starts the idle clock of a listening tunnel with no open connection (idle_timeout 0: none). */
  armIdle(t: Tunnel): void {
    if (t.idleTimeoutMs <= 0 || t.sockets.size > 0 || !t.listener) return;
    t.idleTimer?.cancel();
    t.idleTimer = deadline(
      t.idleTimeoutMs,
      `tunnel ${t.id} idle`,
      () => {
        this.log.info(`tunnel ${t.id} idle for ${formatDuration(t.idleTimeoutMs)}: deleting it`);
        this.expire(t.clientId, t.id).catch((err) =>
          this.log.warn(`tunnel ${t.id}: not deleted: ${errorMessage(err)}`),
        );
      },
      { unref: true },
    );
  }

  /** A connection came, or the tunnel stopped listening. */
  cancelIdle(t: Tunnel): void {
    t.idleTimer?.cancel();
  }

  /** Deletes the tunnel at `at` (ms since 1970); one overdue already goes at once. */
  armAutoClose(clientId: string, tunnelId: string, at: number): void {
    this.autoClose.get(tunnelId)?.cancel();
    this.autoClose.set(
      tunnelId,
      deadline(
        at - Date.now(),
        `auto-close of tunnel ${tunnelId}`,
        () => {
          this.autoClose.delete(tunnelId);
          this.log.info(`tunnel ${tunnelId} of client ${clientId} reached its auto-close time: deleting it`);
          this.expire(clientId, tunnelId).catch((err) =>
            this.log.warn(`tunnel ${tunnelId}: not closed at its auto-close time: ${errorMessage(err)}`),
          );
        },
        { unref: true },
      ),
    );
  }

  /** The tunnel is gone: no auto-close left behind. */
  forget(tunnelId: string): void {
    this.autoClose.get(tunnelId)?.cancel();
    this.autoClose.delete(tunnelId);
  }

  /** The server stops: no auto-close fires while it closes. */
  stop(): void {
    for (const d of this.autoClose.values()) d.cancel();
    this.autoClose.clear();
  }
}
