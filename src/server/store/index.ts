import type { Db } from '../db/db.js';
import { ClientRecords } from './clients.js';
import { CredentialRecords } from './credentials.js';
import { FailedLoginRecords } from './failed-logins.js';
import { SqlJobStore } from './jobs.js';
import { MIGRATIONS } from './migrations.js';
import { SqlNodeRecords } from './nodes.js';
import { TunnelRecords } from './tunnels.js';

export { MIGRATIONS } from './migrations.js';
export type { ClientRow, ConnectedClient } from './clients.js';
export type { NodeRecords, NodeRow } from './nodes.js';
export type { TunnelOptionsRow, TunnelRow } from './tunnels.js';

/**
 * The server's registry: one set of records per aggregate (clients, tunnels, credentials, login failures,
 * the cluster's nodes, jobs), each handed to the part that owns it. One set of queries for SQLite (one
 * node, the default) and PostgreSQL (several nodes sharing it); every write is committed before its
 * promise resolves.
 */
export class Store {
  readonly clients: ClientRecords;
  readonly tunnels: TunnelRecords;
  readonly credentials: CredentialRecords;
  readonly failedLogins: FailedLoginRecords;
  readonly nodes: SqlNodeRecords;
  readonly jobs: SqlJobStore;

  constructor(private readonly db: Db) {
    this.clients = new ClientRecords(db);
    this.tunnels = new TunnelRecords(db);
    this.credentials = new CredentialRecords(db);
    this.failedLogins = new FailedLoginRecords(db);
    this.nodes = new SqlNodeRecords(db);
    this.jobs = new SqlJobStore(db);
  }

  get kind(): Db['kind'] {
    return this.db.kind;
  }

  /** For messages: the file, or user@host/name. */
  get where(): string {
    return this.db.where;
  }

  migrate(): Promise<void> {
    return this.db.migrate(MIGRATIONS);
  }

  close(): Promise<void> {
    return this.db.close();
  }
}
