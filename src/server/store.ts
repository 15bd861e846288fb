import type { Db, Sql } from './db/db.js';
import type { FailureRecord } from './login-throttle.js';

/**
 * The server's registry: clients, tunnels, credentials, login failures and, for a cluster, its nodes and
 * their tunnel ports. One set of queries for SQLite (one node, the default) and PostgreSQL (several nodes
 * sharing it); every write is committed before its promise resolves.
 *
 * MIGRATIONS[n] takes the schema from version n to n+1, in one transaction with the version bump.
 * Timestamps are milliseconds since 1970: BIGINT (SQLite gives it INTEGER affinity).
 */
export const MIGRATIONS: string[] = [
  `CREATE TABLE clients (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL DEFAULT '',
     tags TEXT NOT NULL DEFAULT '[]',
     hostname TEXT NOT NULL DEFAULT '',
     os TEXT NOT NULL DEFAULT '',
     arch TEXT NOT NULL DEFAULT '',
     version TEXT NOT NULL DEFAULT '',
     address TEXT NOT NULL DEFAULT '',
     auth_id TEXT NOT NULL DEFAULT '',
     pid INTEGER,
     process_start BIGINT,
     connected INTEGER NOT NULL DEFAULT 0,
     connected_at BIGINT,
     disconnected_at BIGINT,
     last_seen_at BIGINT,
     watchdog TEXT
   );
   CREATE TABLE client_restarts (
     client_id TEXT NOT NULL,
     at BIGINT NOT NULL,
     old_pid INTEGER,
     new_pid INTEGER
   );
   CREATE INDEX client_restarts_by_client ON client_restarts (client_id, at);
   CREATE TABLE tunnels (
     id TEXT PRIMARY KEY,
     client_id TEXT NOT NULL,
     local_host TEXT NOT NULL,
     local_port INTEGER NOT NULL,
     remote TEXT NOT NULL,
     acl TEXT NOT NULL DEFAULT '[]',
     idle_timeout_ms BIGINT NOT NULL DEFAULT 0,
     created_by TEXT NOT NULL,
     source TEXT NOT NULL DEFAULT '',
     created_at BIGINT NOT NULL
   );
   CREATE INDEX tunnels_by_client ON tunnels (client_id);
   CREATE TABLE credentials (
     id TEXT PRIMARY KEY,
     password_hash TEXT NOT NULL,
     created_at BIGINT NOT NULL
   );
   CREATE TABLE failed_logins (
     address TEXT PRIMARY KEY,
     count INTEGER NOT NULL,
     banned_until BIGINT NOT NULL DEFAULT 0
   );`,
  // Failures counted per source and account (the key), forgotten ban_time after the last one.
  // ... and a client id's owner (auth_id) looked up by credential for auth_multiuse_creds.
  `ALTER TABLE failed_logins ADD COLUMN last_failed_at BIGINT NOT NULL DEFAULT 0;
   CREATE INDEX clients_by_auth_id ON clients (auth_id);`,
  // What an API tunnel was asked for beyond its route (RPort's scheme, auto-close): the row goes with its tunnel.
  `CREATE TABLE tunnel_options (
     tunnel_id TEXT PRIMARY KEY REFERENCES tunnels (id) ON DELETE CASCADE,
     scheme TEXT NOT NULL DEFAULT '',
     lport_random INTEGER NOT NULL DEFAULT 0,
     auto_close_at BIGINT
   );`,
  // A cluster: which node holds a connected client (and which of its sessions, so that a late write of an
  // old session cannot mark its successor disconnected), the nodes with their heartbeats, the tunnel ports
  // claimed across the cluster, and the secret nodes present to each other.
  `ALTER TABLE clients ADD COLUMN node_id TEXT NOT NULL DEFAULT '';
   ALTER TABLE clients ADD COLUMN session_id TEXT NOT NULL DEFAULT '';
   CREATE INDEX clients_by_node ON clients (node_id, connected);
   CREATE TABLE nodes (
     id TEXT PRIMARY KEY,
     api_url TEXT NOT NULL,
     client_address TEXT NOT NULL,
     public_host TEXT NOT NULL,
     started_at BIGINT NOT NULL,
     heartbeat_at BIGINT NOT NULL
   );
   CREATE TABLE port_claims (
     port INTEGER PRIMARY KEY,
     tunnel_id TEXT NOT NULL,
     node_id TEXT NOT NULL,
     claim TEXT NOT NULL
   );
   CREATE TABLE cluster_secret (
     id INTEGER PRIMARY KEY,
     secret TEXT NOT NULL
   );`,
  // Remote commands and scripts (src/server/jobs/job-store.ts): one row per client and job, one per multi-client job.
  `CREATE TABLE jobs (
     jid TEXT PRIMARY KEY,
     client_id TEXT NOT NULL,
     client_name TEXT NOT NULL DEFAULT '',
     multi_job_id TEXT,
     status TEXT NOT NULL,
     command TEXT NOT NULL,
     is_script INTEGER NOT NULL DEFAULT 0,
     interpreter TEXT NOT NULL DEFAULT '',
     cwd TEXT NOT NULL DEFAULT '',
     timeout_sec INTEGER NOT NULL,
     pid INTEGER,
     created_by TEXT NOT NULL,
     started_at BIGINT NOT NULL,
     finished_at BIGINT,
     exit_code INTEGER,
     error TEXT NOT NULL DEFAULT '',
     stdout TEXT NOT NULL DEFAULT '',
     stderr TEXT NOT NULL DEFAULT '',
     node_id TEXT NOT NULL DEFAULT ''
   );
   CREATE INDEX jobs_by_client ON jobs (client_id, started_at);
   CREATE INDEX jobs_by_multi_job ON jobs (multi_job_id);
   CREATE TABLE multi_jobs (
     jid TEXT PRIMARY KEY,
     created_by TEXT NOT NULL,
     started_at BIGINT NOT NULL,
     spec TEXT NOT NULL
   );`,
];

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
}

export type ConnectedClient = Omit<ClientRow, 'connected' | 'connected_at' | 'disconnected_at' | 'last_seen_at'>;

export interface TunnelOptionsRow {
  tunnel_id: string;
  scheme: string;
  lport_random: number;
  auto_close_at: number | null;
}

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

export interface NodeRow {
  id: string;
  /** http://host:port of its API, for node-to-node calls; '' without an API. */
  api_url: string;
  client_address: string;
  /** The address its tunnels are reached at. */
  public_host: string;
  started_at: number;
  heartbeat_at: number;
}

// The first credential that registered an id keeps it, except that a credential's own id is always its own.
const UPSERT_CLIENT = `INSERT INTO clients (id, name, tags, hostname, os, arch, version, address, auth_id, pid, process_start, connected, connected_at, disconnected_at, last_seen_at, watchdog, node_id, session_id)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, NULL, ?, ?, ?, ?)
  ON CONFLICT (id) DO UPDATE SET name = excluded.name, tags = excluded.tags, hostname = excluded.hostname, os = excluded.os, arch = excluded.arch,
    version = excluded.version, address = excluded.address, auth_id = CASE WHEN excluded.auth_id = excluded.id THEN excluded.auth_id ELSE COALESCE(NULLIF(clients.auth_id, ''), excluded.auth_id) END, pid = excluded.pid,
    process_start = excluded.process_start, connected = 1, connected_at = excluded.connected_at, disconnected_at = NULL,
    last_seen_at = excluded.last_seen_at, watchdog = excluded.watchdog, node_id = excluded.node_id, session_id = excluded.session_id`;

function upsertClient(q: Sql, c: ConnectedClient, connectedAt: number, seenAt: number): Promise<number> {
  return q.run(UPSERT_CLIENT, [c.id, c.name, c.tags, c.hostname, c.os, c.arch, c.version, c.address, c.auth_id, c.pid, c.process_start, connectedAt, seenAt, c.watchdog, c.node_id, c.session_id]);
}

export class Store {
  constructor(private readonly db: Db) {}

  get kind(): Db['kind'] {
    return this.db.kind;
  }

  get where(): string {
    return this.db.where;
  }

  migrate(): Promise<void> {
    return this.db.migrate(MIGRATIONS);
  }

  close(): Promise<void> {
    return this.db.close();
  }

  // --- clients -------------------------------------------------------------------------------------------

  /** A client connected: its row is created or updated; a new pid or start time is counted as a restart. */
  clientConnected(c: ConnectedClient, now: number): Promise<void> {
    return this.db.tx(async (q) => {
      const old = await q.get<Pick<ClientRow, 'pid' | 'process_start'>>('SELECT pid, process_start FROM clients WHERE id = ?', [c.id]);
      if (old && old.pid !== null && (old.pid !== c.pid || old.process_start !== c.process_start)) {
        await q.run('INSERT INTO client_restarts (client_id, at, old_pid, new_pid) VALUES (?, ?, ?, ?)', [c.id, now, old.pid, c.pid]);
      }
      await upsertClient(q, c, now, now);
    });
  }

  /** Only the session that wrote the row marks it disconnected: its successor (on any node) keeps it. */
  async clientDisconnected(id: string, sessionId: string, now: number): Promise<void> {
    await this.db.run('UPDATE clients SET connected = 0, disconnected_at = ?, last_seen_at = ? WHERE id = ? AND session_id = ?', [now, now, id, sessionId]);
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

  /**
   * After the database was out of reach: the rows of this node say what it holds now. Its live sessions
   * are written again (no restart counted), its rows of clients that left meanwhile are marked disconnected.
   */
  resyncNode(nodeId: string, live: Array<{ client: ConnectedClient; connectedAt: number; seenAt: number }>, now: number): Promise<void> {
    return this.db.tx(async (q) => {
      const ids = new Set(live.map((l) => l.client.id));
      const rows = await q.all<{ id: string }>('SELECT id FROM clients WHERE node_id = ? AND connected = 1', [nodeId]);
      for (const r of rows) if (!ids.has(r.id)) await q.run('UPDATE clients SET connected = 0, disconnected_at = ? WHERE id = ? AND node_id = ?', [now, r.id, nodeId]);
      for (const l of live) await upsertClient(q, l.client, l.connectedAt, l.seenAt);
    });
  }

  /** A node that starts, or one found dead: none of its clients is connected any more, its ports are free. */
  releaseNode(nodeId: string, now: number): Promise<void> {
    return this.db.tx(async (q) => {
      // '' is a row written before nodes had ids: on SQLite only this node can have written it.
      await q.run("UPDATE clients SET connected = 0, disconnected_at = COALESCE(disconnected_at, ?) WHERE connected = 1 AND (node_id = ? OR node_id = '')", [now, nodeId]);
      await q.run('DELETE FROM port_claims WHERE node_id = ?', [nodeId]);
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
    return (await this.db.all<{ id: string }>('SELECT id FROM clients WHERE auth_id = ? ORDER BY id', [authId])).map((r) => r.id);
  }

  async clientCount(): Promise<number> {
    return (await this.db.get<{ n: number }>('SELECT COUNT(*) AS n FROM clients'))!.n;
  }

  client(id: string): Promise<ClientRow | undefined> {
    return this.db.get<ClientRow>('SELECT * FROM clients WHERE id = ?', [id]);
  }

  /** Restarts per client since `since`, in one query (clients without any are absent). */
  async restartsSince(since: number): Promise<Map<string, number>> {
    const rows = await this.db.all<{ client_id: string; n: number }>('SELECT client_id, COUNT(*) AS n FROM client_restarts WHERE at >= ? GROUP BY client_id', [since]);
    return new Map(rows.map((r) => [r.client_id, r.n]));
  }

  deleteClient(id: string): Promise<void> {
    return this.db.tx((q) => this.deleteClientIn(q, id));
  }

  private async deleteClientIn(q: Sql, id: string): Promise<void> {
    await q.run('DELETE FROM port_claims WHERE tunnel_id IN (SELECT id FROM tunnels WHERE client_id = ?)', [id]);
    await q.run('DELETE FROM tunnel_options WHERE tunnel_id IN (SELECT id FROM tunnels WHERE client_id = ?)', [id]);
    for (const table of ['clients WHERE id', 'tunnels WHERE client_id', 'client_restarts WHERE client_id']) await q.run(`DELETE FROM ${table} = ?`, [id]);
  }

  /** keep_disconnected_clients: forget clients gone for longer; returns their ids. */
  purgeDisconnected(before: number): Promise<string[]> {
    return this.db.tx(async (q) => {
      const ids = (await q.all<{ id: string }>('SELECT id FROM clients WHERE connected = 0 AND disconnected_at < ?', [before])).map((r) => r.id);
      for (const id of ids) await this.deleteClientIn(q, id);
      await q.run('DELETE FROM client_restarts WHERE at < ?', [before - 86_400_000]);
      return ids;
    });
  }

  // --- tunnels -------------------------------------------------------------------------------------------

  tunnels(): Promise<TunnelRow[]> {
    return this.db.all<TunnelRow>('SELECT * FROM tunnels ORDER BY created_at');
  }

  tunnelsOf(clientId: string): Promise<TunnelRow[]> {
    return this.db.all<TunnelRow>('SELECT * FROM tunnels WHERE client_id = ? ORDER BY created_at', [clientId]);
  }

  async saveTunnel(t: TunnelRow): Promise<void> {
    await this.db.run(`INSERT INTO tunnels (id, client_id, local_host, local_port, remote, acl, idle_timeout_ms, created_by, source, created_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (id) DO UPDATE SET local_host = excluded.local_host, local_port = excluded.local_port`,
    [t.id, t.client_id, t.local_host, t.local_port, t.remote, t.acl, t.idle_timeout_ms, t.created_by, t.source, t.created_at]);
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
    return (await this.db.run(`INSERT INTO port_claims (port, tunnel_id, node_id, claim) VALUES (?, ?, ?, ?)
      ON CONFLICT (port) DO UPDATE SET node_id = excluded.node_id, claim = excluded.claim WHERE port_claims.tunnel_id = excluded.tunnel_id`, [port, tunnelId, nodeId, claim])) === 1;
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
    await this.db.run(`INSERT INTO tunnel_options (tunnel_id, scheme, lport_random, auto_close_at) VALUES (?, ?, ?, ?)
      ON CONFLICT (tunnel_id) DO UPDATE SET scheme = excluded.scheme, lport_random = excluded.lport_random, auto_close_at = excluded.auto_close_at`,
    [o.tunnel_id, o.scheme, o.lport_random, o.auto_close_at]);
  }

  // --- credentials ------------------------------------------------------------------------------------------

  credentials(): Promise<Array<{ id: string; password_hash: string; created_at: number }>> {
    return this.db.all('SELECT * FROM credentials ORDER BY id');
  }

  async credential(id: string): Promise<string | undefined> {
    return (await this.db.get<{ password_hash: string }>('SELECT password_hash FROM credentials WHERE id = ?', [id]))?.password_hash;
  }

  /** False when the id exists already. */
  async addCredential(id: string, hash: string, now: number): Promise<boolean> {
    return (await this.db.run('INSERT INTO credentials (id, password_hash, created_at) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING', [id, hash, now])) === 1;
  }

  async deleteCredential(id: string): Promise<boolean> {
    return (await this.db.run('DELETE FROM credentials WHERE id = ?', [id])) === 1;
  }

  // --- failed logins ----------------------------------------------------------------------------------------

  async failedLogins(): Promise<Map<string, FailureRecord>> {
    const rows = await this.db.all<FailureRecord & { address: string }>('SELECT address, count, banned_until, last_failed_at FROM failed_logins');
    return new Map(rows.map(({ address, ...r }) => [address, r]));
  }

  async setFailedLogin(key: string, r: FailureRecord): Promise<void> {
    await this.db.run(`INSERT INTO failed_logins (address, count, banned_until, last_failed_at) VALUES (?, ?, ?, ?)
      ON CONFLICT (address) DO UPDATE SET count = excluded.count, banned_until = excluded.banned_until, last_failed_at = excluded.last_failed_at`, [key, r.count, r.banned_until, r.last_failed_at]);
  }

  async clearFailedLogin(key: string): Promise<void> {
    await this.db.run('DELETE FROM failed_logins WHERE address = ?', [key]);
  }

  /** Failure counts with no ban left and no failure since `before`: a flood from many sources must not grow the table forever. */
  async purgeFailedLogins(now: number, before: number): Promise<void> {
    await this.db.run('DELETE FROM failed_logins WHERE banned_until < ? AND last_failed_at < ?', [now, before]);
  }

  // --- cluster ---------------------------------------------------------------------------------------------

  async heartbeat(n: NodeRow): Promise<void> {
    await this.db.run(`INSERT INTO nodes (id, api_url, client_address, public_host, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?)
      ON CONFLICT (id) DO UPDATE SET api_url = excluded.api_url, client_address = excluded.client_address, public_host = excluded.public_host,
        started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at`, [n.id, n.api_url, n.client_address, n.public_host, n.started_at, n.heartbeat_at]);
  }

  nodes(): Promise<NodeRow[]> {
    return this.db.all<NodeRow>('SELECT * FROM nodes ORDER BY id');
  }

  /** A node stopping cleanly leaves at once rather than after the dead bound. */
  async removeNode(id: string): Promise<void> {
    await this.db.run('DELETE FROM nodes WHERE id = ?', [id]);
  }

  /** Nodes silent since `before` are dead: they leave, their clients are released; returns their ids. */
  sweepDeadNodes(before: number, now: number): Promise<string[]> {
    return this.db.tx(async (q) => {
      const dead = (await q.all<{ id: string }>('SELECT id FROM nodes WHERE heartbeat_at < ?', [before])).map((r) => r.id);
      for (const id of dead) {
        await q.run('UPDATE clients SET connected = 0, disconnected_at = COALESCE(disconnected_at, ?) WHERE connected = 1 AND node_id = ?', [now, id]);
        await q.run('DELETE FROM port_claims WHERE node_id = ?', [id]);
        // Its jobs' results would have come in through it: no longer awaited there (a late one still counts).
        await q.run("UPDATE jobs SET status = 'unknown', error = ? WHERE status = 'running' AND node_id = ?", [`node ${id}, which sent the job, stopped heart-beating: its result is filled in if the client delivers it to another node`, id]);
        await q.run('DELETE FROM nodes WHERE id = ?', [id]);
      }
      return dead;
    });
  }

  /** The cluster's secret: the first node's candidate becomes everyone's. */
  async clusterSecret(candidate: string): Promise<string> {
    await this.db.run('INSERT INTO cluster_secret (id, secret) VALUES (1, ?) ON CONFLICT (id) DO NOTHING', [candidate]);
    return (await this.db.get<{ secret: string }>('SELECT secret FROM cluster_secret WHERE id = 1'))!.secret;
  }
}
