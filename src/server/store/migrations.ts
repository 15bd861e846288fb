/**
 * The registry's schema, every table of the store's aggregates: MIGRATIONS[n] takes the schema from
 * version n to n+1, in one transaction with the version bump. Steps are never edited once released.
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
  // Remote commands and scripts (store/jobs.ts): one row per client and job, one per multi-client job.
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
  // A stock RPort client's last report of pending OS updates (RPort's UpdatesStatus JSON, as checked on arrival).
  `ALTER TABLE clients ADD COLUMN updates_status TEXT;`,
];
