import type { Param, Sql } from '../db/db.js';

/**
 * Where jobs live: the whole interface the job service needs, on the registry's database (SQLite or
 * PostgreSQL). Times are ms since the epoch; lists and objects are JSON text.
 *
 *   insertJob, updateJob, job, jobsOfClient, jobsOfMultiJob,
 *   insertMultiJob, multiJob, multiJobs, abandonRunning
 */
export interface JobStore {
  insertJob(j: JobRow): Promise<void>;
  /** Changes the given fields of one job. */
  updateJob(jid: string, patch: JobPatch): Promise<void>;
  job(jid: string): Promise<JobRow | undefined>;
  /** Newest first. */
  jobsOfClient(clientId: string, limit: number): Promise<JobRow[]>;
  /** In the order they started. */
  jobsOfMultiJob(multiJobId: string): Promise<JobRow[]>;
  insertMultiJob(m: MultiJobRow): Promise<void>;
  multiJob(jid: string): Promise<MultiJobRow | undefined>;
  /** Newest first. */
  multiJobs(limit: number): Promise<MultiJobRow[]>;
  /** At start: the jobs this node's last run sent and left running get `status` and `error`. */
  abandonRunning(nodeId: string, status: string, error: string): Promise<void>;
}

export type JobStatus = 'running' | 'successful' | 'failed' | 'unknown';

export interface JobRow {
  jid: string;
  client_id: string;
  client_name: string;
  multi_job_id: string | null;
  status: JobStatus;
  command: string;
  is_script: number;
  interpreter: string;
  cwd: string;
  timeout_sec: number;
  pid: number | null;
  created_by: string;
  started_at: number;
  finished_at: number | null;
  exit_code: number | null;
  error: string;
  stdout: string;
  stderr: string;
  /** The node that created the job, then the node that sent it to its client (which takes its result). */
  node_id: string;
}

export type JobPatch = Partial<
  Pick<
    JobRow,
    'status' | 'pid' | 'started_at' | 'finished_at' | 'exit_code' | 'error' | 'stdout' | 'stderr' | 'node_id'
  >
>;

export interface MultiJobRow {
  jid: string;
  created_by: string;
  started_at: number;
  /** JSON of MultiJobSpec. */
  spec: string;
}

const PATCHABLE = [
  'status',
  'pid',
  'started_at',
  'finished_at',
  'exit_code',
  'error',
  'stdout',
  'stderr',
  'node_id',
] as const;
const JOB_COLUMNS = [
  'jid',
  'client_id',
  'client_name',
  'multi_job_id',
  'status',
  'command',
  'is_script',
  'interpreter',
  'cwd',
  'timeout_sec',
  'pid',
  'created_by',
  'started_at',
  'finished_at',
  'exit_code',
  'error',
  'stdout',
  'stderr',
  'node_id',
] as const;

/** PostgreSQL's text cannot hold NUL: output keeps its place with U+FFFD on every backend alike. */
function text(v: Param): Param {
  return typeof v === 'string' && v.includes('\0') ? v.replaceAll('\0', '\uFFFD') : v;
}

/** The jobs a node sent and still awaits get `status` and `error` (also in a transaction of another aggregate). */
export async function abandonRunning(q: Sql, nodeId: string, status: string, error: string): Promise<void> {
  await q.run("UPDATE jobs SET status = ?, error = ? WHERE status = 'running' AND node_id = ?", [
    status,
    error,
    nodeId,
  ]);
}

/** The JobStore on the registry's database, SQLite or PostgreSQL (the tables of the store's jobs migration). */
export class SqlJobStore implements JobStore {
  constructor(private readonly db: Sql) {}

  async insertJob(j: JobRow): Promise<void> {
    await this.db.run(
      `INSERT INTO jobs (${JOB_COLUMNS.join(', ')}) VALUES (${JOB_COLUMNS.map(() => '?').join(', ')})`,
      JOB_COLUMNS.map((k) => text(j[k])),
    );
  }

  async updateJob(jid: string, patch: JobPatch): Promise<void> {
    const keys = PATCHABLE.filter((k) => patch[k] !== undefined);
    if (!keys.length) return;
    await this.db.run(`UPDATE jobs SET ${keys.map((k) => `${k} = ?`).join(', ')} WHERE jid = ?`, [
      ...keys.map((k) => text(patch[k]!)),
      jid,
    ]);
  }

  job(jid: string): Promise<JobRow | undefined> {
    return this.db.get<JobRow>('SELECT * FROM jobs WHERE jid = ?', [jid]);
  }

  jobsOfClient(clientId: string, limit: number): Promise<JobRow[]> {
    return this.db.all<JobRow>('SELECT * FROM jobs WHERE client_id = ? ORDER BY started_at DESC, jid LIMIT ?', [
      clientId,
      limit,
    ]);
  }

  jobsOfMultiJob(multiJobId: string): Promise<JobRow[]> {
    return this.db.all<JobRow>('SELECT * FROM jobs WHERE multi_job_id = ? ORDER BY started_at, jid', [multiJobId]);
  }

  async insertMultiJob(m: MultiJobRow): Promise<void> {
    await this.db.run('INSERT INTO multi_jobs (jid, created_by, started_at, spec) VALUES (?, ?, ?, ?)', [
      m.jid,
      m.created_by,
      m.started_at,
      m.spec,
    ]);
  }

  multiJob(jid: string): Promise<MultiJobRow | undefined> {
    return this.db.get<MultiJobRow>('SELECT * FROM multi_jobs WHERE jid = ?', [jid]);
  }

  multiJobs(limit: number): Promise<MultiJobRow[]> {
    return this.db.all<MultiJobRow>('SELECT * FROM multi_jobs ORDER BY started_at DESC, jid LIMIT ?', [limit]);
  }

  abandonRunning(nodeId: string, status: string, error: string): Promise<void> {
    return abandonRunning(this.db, nodeId, status, error);
  }
}
