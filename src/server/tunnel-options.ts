import type { Logger } from '../log.js';
import { deadline, type Deadline } from '../timeout.js';
import type { TunnelOptionsRow } from './store/index.js';

/** A tunnel's API options as the API shows them. */
export interface Options {
  scheme: string;
  lport_random: boolean;
  auto_close_at: string | null;
}

/** Where the options are kept: the tunnel manager's store. */
export interface TunnelOptionRecords {
  options(): Promise<Array<TunnelOptionsRow & { client_id: string }>>;
  saveOptions(o: TunnelOptionsRow): Promise<void>;
}

/**
 * What API tunnels were asked for beyond what the tunnel manager keeps: scheme, whether the port was
 * picked, and auto-close, whose deadline is kept in the store so that a restart does not let a tunnel
 * outlive it (an overdue tunnel closes at start). The server owns it, not the API: restored tunnels
 * listen again with or without [api] address, so their auto-close timers must run either way.
 */
export class TunnelOptions {
  private readonly timers = new Map<string, Deadline>();

  constructor(
    private readonly store: TunnelOptionRecords,
    private readonly close: (clientId: string, tunnelId: string) => void,
    private readonly log: Logger,
  ) {}

  /** Arms the auto-close timers of the stored tunnels. */
  async init(): Promise<void> {
    for (const row of await this.store.options()) if (row.auto_close_at !== null) this.arm(row.client_id, row.tunnel_id, row.auto_close_at);
  }

  /** Every live tunnel's options by tunnel id: one read per answer. */
  async all(): Promise<Map<string, Options>> {
    return new Map((await this.store.options()).map((r) => [r.tunnel_id, {
      scheme: r.scheme, lport_random: !!r.lport_random, auto_close_at: r.auto_close_at === null ? null : new Date(r.auto_close_at).toISOString(),
    }]));
  }

  async save(clientId: string, tunnelId: string, o: { scheme: string; lportRandom: boolean; autoCloseMs: number }): Promise<void> {
    const at = o.autoCloseMs > 0 ? Date.now() + o.autoCloseMs : null;
    await this.store.saveOptions({ tunnel_id: tunnelId, scheme: o.scheme, lport_random: o.lportRandom ? 1 : 0, auto_close_at: at });
    if (at !== null) this.arm(clientId, tunnelId, at);
  }

  /** The tunnel is gone: no timer left behind. */
  forget(tunnelId: string): void {
    this.timers.get(tunnelId)?.cancel();
    this.timers.delete(tunnelId);
  }

  stop(): void {
    for (const t of this.timers.values()) t.cancel();
    this.timers.clear();
  }

  private arm(clientId: string, tunnelId: string, at: number): void {
    this.timers.get(tunnelId)?.cancel();
    this.timers.set(tunnelId, deadline(at - Date.now(), `auto-close of tunnel ${tunnelId}`, () => {
      this.timers.delete(tunnelId);
      this.log.info(`tunnel ${tunnelId} of client ${clientId} reached its auto-close time: deleting it`);
      this.close(clientId, tunnelId);
    }, { unref: true }));
  }
}
