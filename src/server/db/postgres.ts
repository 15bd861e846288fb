import type pg from 'pg';
import { errorMessage, type Logger } from '../../log.js';
import { DatabaseError, newerSchema, type Db, type Param, type Sql } from './db.js';

export interface PostgresSettings {
  /** host:port, or the folder of a Unix socket. */
  host: string;
  port: number;
  database: string;
  user: string;
  password: string;
}

/** A statement that runs longer is cancelled by the server; the client gives up a little later. */
export const STATEMENT_TIMEOUT_MS = 5_000;
const CONNECT_TIMEOUT_MS = 5_000;
/** Lock id that makes the migrations of several nodes starting together run one at a time. */
const MIGRATION_LOCK = 727_274_001;
/** int8 (COUNT(*), BIGINT columns): milliseconds since 1970 fit a double exactly. */
const INT8_OID = 20;

/** `?` placeholders as PostgreSQL's $1, $2, ... (no statement of ours has a ? inside a string). */
function numbered(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

function sqlOf(q: pg.Pool | pg.PoolClient): Sql {
  return {
    all: async <T>(sql: string, params: Param[] = []) => (await q.query(numbered(sql), params)).rows as T[],
    get: async <T>(sql: string, params: Param[] = []) =>
      (await q.query(numbered(sql), params)).rows[0] as T | undefined,
    run: async (sql: string, params: Param[] = []) => (await q.query(numbered(sql), params)).rowCount ?? 0,
  };
}

/**
 * PostgreSQL through a pool of pg connections: each query takes a connection (a new one when the server
 * came back), every statement has a server-side and a client-side timeout, and a broken connection is
 * dropped from the pool rather than reused.
 */
export class PostgresDb implements Db {
  readonly kind = 'postgres';
  readonly where: string;
  private readonly direct: Sql;

  private constructor(
    private readonly pool: pg.Pool,
    where: string,
  ) {
    this.where = where;
    this.direct = sqlOf(pool);
  }

  /** pg is loaded only here: a node on SQLite never loads it. */
  static async open(s: PostgresSettings, log: Logger): Promise<PostgresDb> {
    const { default: pgModule } = await import('pg');
    const pool = new pgModule.Pool({
      host: s.host,
      port: s.port,
      database: s.database,
      user: s.user,
      password: s.password || undefined,
      max: 10,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      idleTimeoutMillis: 30_000,
      keepAlive: true,
      statement_timeout: STATEMENT_TIMEOUT_MS,
      query_timeout: STATEMENT_TIMEOUT_MS + 2_000,
      application_name: 'rportd',
      types: {
        getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
          oid === INT8_OID
            ? Number
            : pgModule.types.getTypeParser(oid, format as 'text')) as typeof pgModule.types.getTypeParser,
      },
    });
    // An idle connection that breaks (the server restarted) must not crash the process: the pool drops it.
    pool.on('error', (err) => log.warn(`PostgreSQL connection lost: ${errorMessage(err)}`));
    return new PostgresDb(
      pool,
      `postgres://${s.user}@${s.host.startsWith('/') ? s.host : `${s.host}:${s.port}`}/${s.database}`,
    );
  }

  /** Errors of the server or the connection say which database they come from. */
  private wrap<T>(p: Promise<T>): Promise<T> {
    return p.catch((err: unknown) => {
      throw err instanceof DatabaseError ? err : new DatabaseError(this.where, err);
    });
  }

  all<T>(sql: string, params?: Param[]): Promise<T[]> {
    return this.wrap(this.direct.all<T>(sql, params));
  }

  get<T>(sql: string, params?: Param[]): Promise<T | undefined> {
    return this.wrap(this.direct.get<T>(sql, params));
  }

  run(sql: string, params?: Param[]): Promise<number> {
    return this.wrap(this.direct.run(sql, params));
  }

  tx<T>(fn: (q: Sql) => Promise<T>): Promise<T> {
    return this.wrap(this.inTx(fn));
  }

  private async inTx<T>(fn: (q: Sql) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    // A connection that breaks while checked out (the server stopped) emits 'error' on its client: without
    // a listener the process would die of it. The statement fails on its own; the client is then discarded.
    const onError = (err: Error) => (broken ??= err);
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      const r = await fn(sqlOf(client));
      await client.query('COMMIT');
      return r;
    } catch (err) {
      await client.query('ROLLBACK').catch((e: Error) => (broken = e));
      throw err;
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }

  async migrate(migrations: string[]): Promise<void> {
    await this.tx(async (q) => {
      await q.run(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`);
      await q.run('CREATE TABLE IF NOT EXISTS rport_schema (version INTEGER NOT NULL)');
      const from = (await q.get<{ version: number }>('SELECT version FROM rport_schema'))?.version ?? 0;
      if (from > migrations.length) throw newerSchema(this.where, from, migrations.length);
      // DDL is transactional in PostgreSQL: every step commits with the version, or none does.
      for (let v = from; v < migrations.length; v++) {
        for (const statement of migrations[v]!.split(';')
          .map((s) => s.trim())
          .filter(Boolean))
          await q.run(statement);
      }
      await q.run('DELETE FROM rport_schema');
      await q.run('INSERT INTO rport_schema (version) VALUES (?)', [migrations.length]);
    });
  }

  close(): Promise<void> {
    return this.pool.end();
  }
}
