import type { Db, Sql } from '../db/db.js';

export interface TunnelRow {
  id: string;
  client_id: string;
  local_host: string;
  local_port: number;
  remote: string;
  acl: string;
  idle_timeout_ms: number;
  created_by: 'api' | 'client';
  source: string;
  created_at: number;
}

/** What an API tunnel was asked for beyond its route; the row goes with its tunnel. */
export interface TunnelOptionsRow {
  tunnel_id: string;
  scheme: string;
  lport_random: number;
  auto_close_at: number | null;
}

/** A client's tunnels go, with their options and port claims (in the caller's transaction). */
export async function deleteTunnelsOfClient(q: Sql, clientId: string): Promise<void> {
  await q.run('DELETE FROM port_claims WHERE tunnel_id IN (SELECT id FROM tunnels WHERE client_id = ?)', [clientId]);
  await q.run('DELETE FROM tunnel_options WHERE tunnel_id IN (SELECT id FROM tunnels WHERE client_id = ?)', [clientId]);
  await q.run('DELETE FROM tunnels WHERE client_id = ?', [clientId]);
}

/** A node that starts, stops or was found dead listens on nothing: its port claims are free. */
export async function releasePortsOfNode(q: Sql, nodeId: string): Promise<void> {
  await q.run('DELETE FROM port_claims WHERE node_id = ?', [nodeId]);
}

/** The tunnels table, their API options and the tunnel ports claimed across the cluster. */
export class TunnelRecords {
  constructor(private readonly db: Db) {}

  tunnels(): Promise<TunnelRow[]> {
    return this.db.all<TunnelRow>('SELECT * FROM tunnels ORDER BY created_at');
  }

  tunnelsOf(clientId: string): Promise<TunnelRow[]> {
    return this.db.all<TunnelRow>('SELECT * FROM tunnels WHERE client_id = ? ORDER BY created_at', [clientId]);
  }

  async saveTunnel(t: TunnelRow): Promise<void> {
    await this.db.run(
      `INSERT INTO tunnels (id, client_id, local_host, local_port, remote, acl, idle_timeout_ms, created_by, source, created_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (id) DO UPDATE SET local_host = excluded.local_host, local_port = excluded.local_port`,
      [
        t.id,
        t.client_id,
        t.local_host,
        t.local_port,
        t.remote,
        t.acl,
        t.idle_timeout_ms,
        t.created_by,
        t.source,
        t.created_at,
      ],
    );
  }

  deleteTunnel(id: string): Promise<void> {
    return this.db.tx(async (q) => {
      await q.run('DELETE FROM port_claims WHERE tunnel_id = ?', [id]);
      await q.run('DELETE FROM tunnel_options WHERE tunnel_id = ?', [id]);
      await q.run('DELETE FROM tunnels WHERE id = ?', [id]);
    });
  }

  /**
   * Claims a tunnel port across the cluster before listening on it: false when another tunnel holds it. A
   * tunnel takes its own port back whichever node claimed it last (its client moved).
   */
  async claimPort(port: number, tunnelId: string, nodeId: string, claim: string): Promise<boolean> {
    return (
      (await this.db.run(
        `INSERT INTO port_claims (port, tunnel_id, node_id, claim) VALUES (?, ?, ?, ?)
      ON CONFLICT (port) DO UPDATE SET node_id = excluded.node_id, claim = excluded.claim WHERE port_claims.tunnel_id = excluded.tunnel_id`,
        [port, tunnelId, nodeId, claim],
      )) === 1
    );
  }

  /** Frees one claim: a late release of an earlier listener of the same tunnel leaves a newer claim alone. */
  async releasePort(port: number, claim: string): Promise<void> {
    await this.db.run('DELETE FROM port_claims WHERE port = ? AND claim = ?', [port, claim]);
  }

  /** Options of the tunnels that still exist, with their client. */
  tunnelOptions(): Promise<Array<TunnelOptionsRow & { client_id: string }>> {
    return this.db.all('SELECT o.*, t.client_id FROM tunnel_options o JOIN tunnels t ON t.id = o.tunnel_id');
  }

  async saveTunnelOptions(o: TunnelOptionsRow): Promise<void> {
    await this.db.run(
      `INSERT INTO tunnel_options (tunnel_id, scheme, lport_random, auto_close_at) VALUES (?, ?, ?, ?)
      ON CONFLICT (tunnel_id) DO UPDATE SET scheme = excluded.scheme, lport_random = excluded.lport_random, auto_close_at = excluded.auto_close_at`,
      [o.tunnel_id, o.scheme, o.lport_random, o.auto_close_at],
    );
  }
}
