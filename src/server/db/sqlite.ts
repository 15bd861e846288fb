import Database from 'better-sqlite3';
import { closeSync, constants, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { chmodOwnFile } from '../../files.js';
import { newerSchema, type Db, type Param, type Sql } from './db.js';

/**
 * SQLite in WAL mode in data_dir. Every write is committed before the promise resolves, so a server killed
 * with SIGKILL restarts with every acknowledged write (WAL with synchronous=NORMAL survives a process
 * crash; on power loss the database stays consistent and may lose the last transactions).
 * better-sqlite3 is synchronous: operations run one after another on a promise chain, so that a
 * transaction waiting on its own statements never takes in another caller's.
 */
export class SqliteDb implements Db {
  readonly kind = 'sqlite';
  readonly where: string;
  private readonly db: Database.Database;
  private readonly statements = new Map<string, Database.Statement>();
  private chain: Promise<unknown> = Promise.resolve();
  private readonly direct: Sql = {
    all: async <T>(sql: string, params: Param[] = []) => this.prepare(sql).all(...params) as T[],
    get: async <T>(sql: string, params: Param[] = []) => this.prepare(sql).get(...params) as T | undefined,
    run: async (sql: string, params: Param[] = []) => this.prepare(sql).run(...params).changes,
  };

  constructor(dataDir: string) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const path = (this.where = join(dataDir, 'rportd.db'));
    // The database holds password hashes and client details: 0600 whatever the umask or the folder's
    // mode. Created empty (a valid SQLite file) with that mode before SQLite opens it; SQLite gives the
    // -wal and -shm files it creates the database's mode. Files an older rportd left readable are tightened.
    if (process.platform !== 'win32') {
      try {
        closeSync(
          openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600),
        );
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      // A symlink at any of the three is refused (chmod and SQLite would follow it to another file).
      for (const f of [path, `${path}-wal`, `${path}-shm`]) chmodOwnFile(f, 0o600);
    }
    this.db = new Database(path, { timeout: 5000 });
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
  }

  private prepare(sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (!s) this.statements.set(sql, (s = this.db.prepare(sql)));
    return s;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.chain.then(fn);
    this.chain = result.catch(() => undefined);
    return result;
  }

  all<T>(sql: string, params?: Param[]): Promise<T[]> {
    return this.serial(() => this.direct.all<T>(sql, params));
  }

  get<T>(sql: string, params?: Param[]): Promise<T | undefined> {
    return this.serial(() => this.direct.get<T>(sql, params));
  }

  run(sql: string, params?: Param[]): Promise<number> {
    return this.serial(() => this.direct.run(sql, params));
  }

  tx<T>(fn: (q: Sql) => Promise<T>): Promise<T> {
    return this.serial(async () => {
      this.db.exec('BEGIN IMMEDIATE');
      try {
        const r = await fn(this.direct);
        this.db.exec('COMMIT');
        return r;
      } catch (err) {
        this.db.exec('ROLLBACK');
        throw err;
      }
    });
  }

  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  migrate(migrations: string[]): Promise<void> {
    return this.serial(async () => {
      const from = this.schemaVersion;
      if (from > migrations.length) throw newerSchema(this.where, from, migrations.length);
      for (let v = from; v < migrations.length; v++) {
        this.db.transaction(() => {
          this.db.exec(migrations[v]!);
          this.db.pragma(`user_version = ${v + 1}`);
        })();
      }
    });
  }

  close(): Promise<void> {
    return this.serial(async () => void this.db.close());
  }
}
