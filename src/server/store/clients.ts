import type { Db, Sql } from '../db/db.js';
import { deleteTunnelsOfClient } from './tunnels.js';

export interface ClientRow {
  id: string;
  name: string;
  tags: string;
  hostname: string;
  os: string;
  arch: string;
  version: string;
  address: string;
  auth_id: string;
  pid: number | null;
  process_start: number | null;
  connected: number;
  connected_at: number | null;
  disconnected_at: number | null;
  last_seen_at: number | null;
  watchdog: string | null;
  node_id: string;
  session_id: string;
  /** A stock RPort client's last updates_status (JSON), kept across its reconnects; null until it sends one. */
  updates_status: string | null;
}

export type ConnectedClient = Omit<
  ClientRow,
  'connected' | 'connected_at' | 'disconnected_at' | 'last_seen_at' | 'updates_status'
>;

// The first credential that registered an id keeps it, except that a credential's own id is always its own.
const UPSERT_CLIENT = `INSERT INTO clients (id, name, tags, hostname, os, arch, version, address, auth_id, pid, process_start, connected, connected_at, disconnected_at, last_seen_at, watchdog, node_id, session_id)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, NULL, ?, ?, ?, ?)
  ON CONFLICT (id) DO UPDATE SET name = excluded.name, tags = excluded.tags, hostname = excluded.hostname, os = excluded.os, arch = excluded.arch,
    version = excluded.version, address = excluded.address, auth_id = CASE WHEN excluded.auth_id = excluded.id THEN excluded.auth_id ELSE COALESCE(NULLIF(clients.auth_id, ''), excluded.auth_id) END, pid = excluded.pid,
    process_start = excluded.process_start, connected = 1, connected_at = excluded.connected_at, disconnected_at = NULL,
    last_seen_at = excluded.last_seen_at, watchdog = excluded.watchdog, node_id = excluded.node_id, session_id = excluded.session_id`;

function upsertClient(q: Sql, c: ConnectedClient, connectedAt: number, seenAt: number): Promise<number> {
  return q.run(UPSERT_CLIENT, [
    c.id,
    c.name,
    c.tags,
    c.hostname,
    c.os,
    c.arch,
    c.version,
    c.address,
    c.auth_id,
    c.pid,
    c.process_start,
    connectedAt,
    seenAt,
    c.watchdog,
    c.node_id,
    c.session_id,
  ]);
}

/**
 * A node's clients are no longer connected (it stopped, or was found dead). With `unnamed`, also the rows
 * written before nodes had ids: on SQLite only this node can have written them.
 */
export async function disconnectClientsOfNode(q: Sql, nodeId: string, now: number, unnamed: boolean): Promise<void> {
  await q.run(
    `UPDATE clients SET connected = 0, disconnected_at = COALESCE(disconnected_at, ?) WHERE connected = 1 AND (node_id = ?${unnamed ? " OR node_id = ''" : ''})`,
    [now, nodeId],
  );
}

/** The clients table with the restarts counted per client. */
export class ClientRecords {
  constructor(private readonly db: Db) {}

  /** A client connected: its row is created or updated; a new pid or start time is counted as a restart. */
  clientConnected(c: ConnectedClient, now: number): Promise<void> {
    return this.db.tx(async (q) => {
      const old = await q.get<Pick<ClientRow, 'pid' | 'process_start'>>(
        'SELECT pid, process_start FROM clients WHERE id = ?',
        [c.id],
      );
      if (old && old.pid !== null && (old.pid !== c.pid || old.process_start !== c.process_start)) {
        await q.run('INSERT INTO client_restarts (client_id, at, old_pid, new_pid) VALUES (?, ?, ?, ?)', [
          c.id,
          now,
          old.pid,
          c.pid,
        ]);
      }
      await upsertClient(q, c, now, now);
    });
  }

  /** Only the session that wrote the row marks it disconnected: its successor (on any node) keeps it. */
  async clientDisconnected(id: string, sessionId: string, now: number): Promise<void> {
    await this.db.run(
      'UPDATE clients SET connected = 0, disconnected_at = ?, last_seen_at = ? WHERE id = ? AND session_id = ?',
      [now, now, id, sessionId],
    );
  }

  /** Last-seen times (and watchdog facts, where they changed) of many clients in one transaction. */
  clientsSeen(seen: Iterable<{ id: string; at: number; watchdog: string | undefined }>): Promise<void> {
    const all = [...seen];
    return this.db.tx(async (q) => {
      for (const s of all) {
        if (s.watchdog === undefined) await q.run('UPDATE clients SET last_seen_at = ? WHERE id = ?', [s.at, s.id]);
        else await q.run('UPDATE clients SET last_seen_at = ?, watchdog = ? WHERE id = ?', [s.at, s.watchdog, s.id]);
      }
    });
  }

  /** A stock RPort client reported its pending OS updates. */
  async setUpdatesStatus(id: string, json: string): Promise<void> {
    await this.db.run('UPDATE clients SET updates_status = ? WHERE id = ?', [json, id]);
  }

  /**
   * After the database was out of reach: the rows of this node say what it holds now. Its live sessions
   * are written again (no restart counted), its rows of clients that left meanwhile are marked disconnected.
   */
  resyncNode(
    nodeId: string,
    live: Array<{ client: ConnectedClient; connectedAt: number; seenAt: number }>,
    now: number,
  ): Promise<void> {
    return this.db.tx(async (q) => {
      const ids = new Set(live.map((l) => l.client.id));
      const rows = await q.all<{ id: string }>('SELECT id FROM clients WHERE node_id = ? AND connected = 1', [nodeId]);
      for (const r of rows)
        if (!ids.has(r.id))
          await q.run('UPDATE clients SET connected = 0, disconnected_at = ? WHERE id = ? AND node_id = ?', [
            now,
            r.id,
            nodeId,
          ]);
      for (const l of live) await upsertClient(q, l.client, l.connectedAt, l.seenAt);
    });
  }

  clients(): Promise<ClientRow[]> {
    return this.db.all<ClientRow>('SELECT * FROM clients ORDER BY id');
  }

  /** The credential that first registered the client id. */
  async clientOwner(id: string): Promise<string | undefined> {
    return (await this.db.get<{ auth_id: string }>('SELECT auth_id FROM clients WHERE id = ?', [id]))?.auth_id;
  }

  async clientIdsOfCredential(authId: string): Promise<string[]> {
    return (await this.db.all<{ id: string }>('SELECT id FROM clients WHERE auth_id = ? ORDER BY id', [authId])).map(
      (r) => r.id,
    );
  }

  async clientCount(): Promise<number> {
    return (await this.db.get<{ n: number }>('SELECT COUNT(*) AS n FROM clients'))!.n;
  }

  client(id: string): Promise<ClientRow | undefined> {
    return this.db.get<ClientRow>('SELECT * FROM clients WHERE id = ?', [id]);
  }

  /** Restarts per client since `since`, in one query (clients without any are absent). */
  async restartsSince(since: number): Promise<Map<string, number>> {
    const rows = await this.db.all<{ client_id: string; n: number }>(
      'SELECT client_id, COUNT(*) AS n FROM client_restarts WHERE at >= ? GROUP BY client_id',
      [since],
    );
    return new Map(rows.map((r) => [r.client_id, r.n]));
  }

  /** A client goes with its tunnels and their port claims. */
  deleteClient(id: string): Promise<void> {
    return this.db.tx((q) => deleteClientIn(q, id));
  }

  /** keep_disconnected_clients: forget clients gone for longer; returns their ids. */
  purgeDisconnected(before: number): Promise<string[]> {
    return this.db.tx(async (q) => {
      const ids = (
        await q.all<{ id: string }>('SELECT id FROM clients WHERE connected = 0 AND disconnected_at < ?', [before])
      ).map((r) => r.id);
      for (const id of ids) await deleteClientIn(q, id);
      await q.run('DELETE FROM client_restarts WHERE at < ?', [before - 86_400_000]);
      return ids;
    });
  }
}

async function deleteClientIn(q: Sql, id: string): Promise<void> {
  await deleteTunnelsOfClient(q, id);
  for (const table of ['clients WHERE id', 'client_restarts WHERE client_id'])
    await q.run(`DELETE FROM ${table} = ?`, [id]);
}
