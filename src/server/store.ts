import Database from 'better-sqlite3';
import { chmodSync, closeSync, constants, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import type { FailureRecord } from './login-throttle.js';

/**
 * The server's registry on disk: SQLite in WAL mode in data_dir. Every write is one transaction that is
 * committed before the API answers, so a server killed with SIGKILL restarts with every acknowledged
 * write (WAL with synchronous=NORMAL survives a process crash; on power loss the database stays
 * consistent and may lose the last transactions).
 *
 * The schema is versioned by PRAGMA user_version; MIGRATIONS[n] takes it from version n to n+1, in one
 * transaction with the version bump.
 */
const MIGRATIONS: string[] = [
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
     process_start INTEGER,
     connected INTEGER NOT NULL DEFAULT 0,
     connected_at INTEGER,
     disconnected_at INTEGER,
     last_seen_at INTEGER,
     watchdog TEXT
   );
   CREATE TABLE client_restarts (
     client_id TEXT NOT NULL,
     at INTEGER NOT NULL,
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
     idle_timeout_ms INTEGER NOT NULL DEFAULT 0,
     created_by TEXT NOT NULL,
     source TEXT NOT NULL DEFAULT '',
     created_at INTEGER NOT NULL
   );
   CREATE INDEX tunnels_by_client ON tunnels (client_id);
   CREATE TABLE credentials (
     id TEXT PRIMARY KEY,
     password_hash TEXT NOT NULL,
     created_at INTEGER NOT NULL
   );
   CREATE TABLE failed_logins (
     address TEXT PRIMARY KEY,
     count INTEGER NOT NULL,
     banned_until INTEGER NOT NULL DEFAULT 0
   );`,
  // Failures counted per source and account (the key), forgotten ban_time after the last one.
  // ... and a client id's owner (auth_id) looked up by credential for auth_multiuse_creds.
  `ALTER TABLE failed_logins ADD COLUMN last_failed_at INTEGER NOT NULL DEFAULT 0;
   CREATE INDEX clients_by_auth_id ON clients (auth_id);`,
  // What an API tunnel was asked for beyond its route (RPort's scheme, auto-close): the row goes with its tunnel.
  `CREATE TABLE tunnel_options (
     tunnel_id TEXT PRIMARY KEY REFERENCES tunnels (id) ON DELETE CASCADE,
     scheme TEXT NOT NULL DEFAULT '',
     lport_random INTEGER NOT NULL DEFAULT 0,
     auto_close_at INTEGER
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
     started_at INTEGER NOT NULL,
     finished_at INTEGER,
     exit_code INTEGER,
     error TEXT NOT NULL DEFAULT '',
     stdout TEXT NOT NULL DEFAULT '',
     stderr TEXT NOT NULL DEFAULT ''
   );
   CREATE INDEX jobs_by_client ON jobs (client_id, started_at);
   CREATE INDEX jobs_by_multi_job ON jobs (multi_job_id);
   CREATE TABLE multi_jobs (
     jid TEXT PRIMARY KEY,
     created_by TEXT NOT NULL,
     started_at INTEGER NOT NULL,
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
}

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

export class Store {
  readonly db: Database.Database;
  readonly path: string;

  constructor(dataDir: string) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    this.path = join(dataDir, 'rportd.db');
    // The database holds password hashes and client details: 0600 whatever the umask or the folder's
    // mode. Created empty (a valid SQLite file) with that mode before SQLite opens it; SQLite gives the
    // -wal and -shm files it creates the database's mode. Files an older rportd left readable are tightened.
    if (process.platform !== 'win32') {
      try {
        closeSync(openSync(this.path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      for (const f of [this.path, `${this.path}-wal`, `${this.path}-shm`]) {
        try {
          chmodSync(f, 0o600);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
      }
    }
    this.db = new Database(this.path, { timeout: 5000 });
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.migrate();
  }

  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  private migrate(): void {
    const from = this.schemaVersion;
    if (from > MIGRATIONS.length) throw new Error(`${this.path} has schema version ${from}, newer than this rportd knows (${MIGRATIONS.length}): upgrade rportd`);
    for (let v = from; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  close(): void {
    this.db.close();
  }

  // --- clients -------------------------------------------------------------------------------------------

  /** A client connected: its row is created or updated; a new pid or start time is counted as a restart. */
  clientConnected(c: Omit<ClientRow, 'connected' | 'connected_at' | 'disconnected_at' | 'last_seen_at'>, now: number): void {
    this.db.transaction(() => {
      const old = this.db.prepare('SELECT pid, process_start FROM clients WHERE id = ?').get(c.id) as Pick<ClientRow, 'pid' | 'process_start'> | undefined;
      if (old && old.pid !== null && (old.pid !== c.pid || old.process_start !== c.process_start)) {
        this.db.prepare('INSERT INTO client_restarts (client_id, at, old_pid, new_pid) VALUES (?, ?, ?, ?)').run(c.id, now, old.pid, c.pid);
      }
      this.db.prepare(`INSERT INTO clients (id, name, tags, hostname, os, arch, version, address, auth_id, pid, process_start, connected, connected_at, disconnected_at, last_seen_at, watchdog)
        VALUES (@id, @name, @tags, @hostname, @os, @arch, @version, @address, @auth_id, @pid, @process_start, 1, @now, NULL, @now, @watchdog)
        ON CONFLICT (id) DO UPDATE SET name = @name, tags = @tags, hostname = @hostname, os = @os, arch = @arch, version = @version, address = @address,
          auth_id = COALESCE(NULLIF(auth_id, ''), @auth_id), pid = @pid, process_start = @process_start, connected = 1, connected_at = @now, disconnected_at = NULL, last_seen_at = @now, watchdog = @watchdog`).run({ ...c, now });
    })();
  }

  clientDisconnected(id: string, now: number): void {
    this.db.prepare('UPDATE clients SET connected = 0, disconnected_at = ?, last_seen_at = ? WHERE id = ?').run(now, now, id);
  }

  /** Last-seen times (and watchdog facts, where they changed) of many clients in one transaction. */
  clientsSeen(seen: Iterable<{ id: string; at: number; watchdog: string | undefined }>): void {
    const at = this.db.prepare('UPDATE clients SET last_seen_at = ? WHERE id = ?');
    const both = this.db.prepare('UPDATE clients SET last_seen_at = ?, watchdog = ? WHERE id = ?');
    this.db.transaction(() => {
      for (const s of seen) {
        if (s.watchdog === undefined) at.run(s.at, s.id);
        else both.run(s.at, s.watchdog, s.id);
      }
    })();
  }

  /** At start: no client is connected yet, whatever the last run left behind. */
  markAllDisconnected(now: number): void {
    this.db.prepare('UPDATE clients SET connected = 0, disconnected_at = COALESCE(disconnected_at, ?) WHERE connected = 1').run(now);
  }

  clients(): ClientRow[] {
    return this.db.prepare('SELECT * FROM clients ORDER BY id').all() as ClientRow[];
  }

  /** The credential that first registered the client id. */
  clientOwner(id: string): string | undefined {
    return (this.db.prepare('SELECT auth_id FROM clients WHERE id = ?').get(id) as { auth_id: string } | undefined)?.auth_id;
  }

  clientIdsOfCredential(authId: string): string[] {
    return (this.db.prepare('SELECT id FROM clients WHERE auth_id = ? ORDER BY id').all(authId) as Array<{ id: string }>).map((r) => r.id);
  }

  clientCount(): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM clients').get() as { n: number }).n;
  }

  client(id: string): ClientRow | undefined {
    return this.db.prepare('SELECT * FROM clients WHERE id = ?').get(id) as ClientRow | undefined;
  }

  /** Restarts per client since `since`, in one query (clients without any are absent). */
  restartsSince(since: number): Map<string, number> {
    const rows = this.db.prepare('SELECT client_id, COUNT(*) AS n FROM client_restarts WHERE at >= ? GROUP BY client_id').all(since) as Array<{ client_id: string; n: number }>;
    return new Map(rows.map((r) => [r.client_id, r.n]));
  }

  deleteClient(id: string): void {
    this.db.transaction(() => {
      for (const table of ['clients WHERE id', 'tunnels WHERE client_id', 'client_restarts WHERE client_id']) this.db.prepare(`DELETE FROM ${table} = ?`).run(id);
    })();
  }

  /** keep_disconnected_clients: forget clients gone for longer; returns their ids. */
  purgeDisconnected(before: number): string[] {
    const ids = (this.db.prepare('SELECT id FROM clients WHERE connected = 0 AND disconnected_at < ?').all(before) as Array<{ id: string }>).map((r) => r.id);
    for (const id of ids) this.deleteClient(id);
    this.db.prepare('DELETE FROM client_restarts WHERE at < ?').run(before - 86_400_000);
    return ids;
  }

  // --- tunnels -------------------------------------------------------------------------------------------

  tunnels(): TunnelRow[] {
    return this.db.prepare('SELECT * FROM tunnels ORDER BY created_at').all() as TunnelRow[];
  }

  saveTunnel(t: TunnelRow): void {
    this.db.prepare(`INSERT INTO tunnels (id, client_id, local_host, local_port, remote, acl, idle_timeout_ms, created_by, source, created_at)
      VALUES (@id, @client_id, @local_host, @local_port, @remote, @acl, @idle_timeout_ms, @created_by, @source, @created_at)
      ON CONFLICT (id) DO UPDATE SET local_host = @local_host, local_port = @local_port`).run(t);
  }

  deleteTunnel(id: string): void {
    this.db.prepare('DELETE FROM tunnels WHERE id = ?').run(id);
  }

  /** Options of the tunnels that still exist, with their client. */
  tunnelOptions(): Array<TunnelOptionsRow & { client_id: string }> {
    return this.db.prepare('SELECT o.*, t.client_id FROM tunnel_options o JOIN tunnels t ON t.id = o.tunnel_id').all() as Array<TunnelOptionsRow & { client_id: string }>;
  }

  saveTunnelOptions(o: TunnelOptionsRow): void {
    this.db.prepare('INSERT OR REPLACE INTO tunnel_options (tunnel_id, scheme, lport_random, auto_close_at) VALUES (@tunnel_id, @scheme, @lport_random, @auto_close_at)').run(o);
  }

  // --- credentials ------------------------------------------------------------------------------------------

  credentials(): Array<{ id: string; password_hash: string; created_at: number }> {
    return this.db.prepare('SELECT * FROM credentials ORDER BY id').all() as Array<{ id: string; password_hash: string; created_at: number }>;
  }

  credential(id: string): string | undefined {
    return (this.db.prepare('SELECT password_hash FROM credentials WHERE id = ?').get(id) as { password_hash: string } | undefined)?.password_hash;
  }

  /** False when the id exists already. */
  addCredential(id: string, hash: string, now: number): boolean {
    return this.db.prepare('INSERT OR IGNORE INTO credentials (id, password_hash, created_at) VALUES (?, ?, ?)').run(id, hash, now).changes === 1;
  }

  deleteCredential(id: string): boolean {
    return this.db.prepare('DELETE FROM credentials WHERE id = ?').run(id).changes === 1;
  }

  // --- failed logins ----------------------------------------------------------------------------------------

  failedLogin(key: string): FailureRecord | undefined {
    return this.db.prepare('SELECT count, banned_until, last_failed_at FROM failed_logins WHERE address = ?').get(key) as FailureRecord | undefined;
  }

  setFailedLogin(key: string, r: FailureRecord): void {
    this.db.prepare(`INSERT INTO failed_logins (address, count, banned_until, last_failed_at) VALUES (?, ?, ?, ?)
      ON CONFLICT (address) DO UPDATE SET count = excluded.count, banned_until = excluded.banned_until, last_failed_at = excluded.last_failed_at`).run(key, r.count, r.banned_until, r.last_failed_at);
  }

  clearFailedLogin(key: string): void {
    this.db.prepare('DELETE FROM failed_logins WHERE address = ?').run(key);
  }

  /** Failure counts with no ban left and no failure since `before`: a flood from many sources must not grow the table forever. */
  purgeFailedLogins(now: number, before: number): void {
    this.db.prepare('DELETE FROM failed_logins WHERE banned_until < ? AND last_failed_at < ?').run(now, before);
  }
}
