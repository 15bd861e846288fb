/** A value bound to a `?` placeholder. */
export type Param = string | number | null;

/** Statements with `?` placeholders, the same text for every backend. */
export interface Sql {
  all<T>(sql: string, params?: Param[]): Promise<T[]>;
  get<T>(sql: string, params?: Param[]): Promise<T | undefined>;
  /** Resolves the number of rows changed. */
  run(sql: string, params?: Param[]): Promise<number>;
}

/**
 * Where the registry lives: SQLite in data_dir (one node) or PostgreSQL (a cluster). Both speak the same
 * queries; everything is async so that a slow or unreachable server never blocks the event loop.
 */
export interface Db extends Sql {
  readonly kind: 'sqlite' | 'postgres';
  /** For messages: the file, or user@host/name. */
  readonly where: string;
  /** Runs fn in one transaction: committed when it resolves, rolled back when it throws. */
  tx<T>(fn: (q: Sql) => Promise<T>): Promise<T>;
  /** Takes the schema from its version to migrations.length, each step in one transaction with its version. */
  migrate(migrations: string[]): Promise<void>;
  close(): Promise<void>;
}

export function newerSchema(where: string, version: number, known: number): Error {
  return new Error(`${where} has schema version ${version}, newer than this rportd knows (${known}): upgrade rportd`);
}

/** The database did not answer or failed a statement: what callers turn into "out of reach" (API: 503). */
export class DatabaseError extends Error {
  constructor(where: string, cause: unknown) {
    super(`the registry database ${where}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}
