import type { TunnelOptionsRow, TunnelRecords } from '../store/tunnels.js';
import type { TunnelTimers } from './timers.js';

/** A tunnel's API options as the API shows them. */
export interface Options {
  scheme: string;
  lport_random: boolean;
  auto_close_at: string | null;
}

/** Where the options are kept. */
export type TunnelOptionRecords = Pick<TunnelRecords, 'tunnelOptions' | 'saveTunnelOptions'>;

/**
 * What API tunnels were asked for beyond what the tunnel manager keeps: scheme, whether the port was
 * picked, and auto-close, whose deadline is kept in the store so that a restart does not let a tunnel
 * outlive it (an overdue tunnel closes at start). Its timers are the tunnels' (TunnelTimers).
 */
export class TunnelOptions {
  constructor(
    private readonly records: TunnelOptionRecords,
    private readonly timers: TunnelTimers,
  ) {}

  /** Arms the auto-close timers of the stored tunnels. */
  async init(): Promise<void> {
    for (const row of await this.records.tunnelOptions())
      if (row.auto_close_at !== null) this.timers.armAutoClose(row.client_id, row.tunnel_id, row.auto_close_at);
  }

  /** Every live tunnel's options by tunnel id: one read per answer. */
  async all(): Promise<Map<string, Options>> {
    return new Map(
      (await this.records.tunnelOptions()).map((r) => [
        r.tunnel_id,
        {
          scheme: r.scheme,
          lport_random: !!r.lport_random,
          auto_close_at: r.auto_close_at === null ? null : new Date(r.auto_close_at).toISOString(),
        },
      ]),
    );
  }

  async save(
    clientId: string,
    tunnelId: string,
    o: { scheme: string; lportRandom: boolean; autoCloseMs: number },
  ): Promise<void> {
    const at = o.autoCloseMs > 0 ? Date.now() + o.autoCloseMs : null;
    const row: TunnelOptionsRow = {
      tunnel_id: tunnelId,
      scheme: o.scheme,
      lport_random: o.lportRandom ? 1 : 0,
      auto_close_at: at,
    };
    await this.records.saveTunnelOptions(row);
    if (at !== null) this.timers.armAutoClose(clientId, tunnelId, at);
  }
}
