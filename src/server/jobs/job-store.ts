import type Database from 'better-sqlite3';

/**
 * Where jobs live: the whole interface the job service needs, async so that a PostgreSQL store can
 * implement it. Times are ms since the epoch; lists and objects are JSON text.
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
  /** At start: jobs left running by the last run get `status` and `error`. */
  abandonRunning(status: string, error: string): Promise<void>;
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
}

export type JobPatch = Partial<Pick<JobRow, 'status' | 'pid' | 'started_at' | 'finished_at' | 'exit_code' | 'error' | 'stdout' | 'stderr'>>;

export interface MultiJobRow {
  jid: string;
  created_by: string;
  started_at: number;
  /** JSON of MultiJobSpec. */
  spec: string;
}

const PATCHABLE = new Set(['status', 'pid', 'started_at', 'finished_at', 'exit_code', 'error', 'stdout', 'stderr']);

/** The JobStore on rportd's SQLite database (the tables of the store's jobs migration). */
export class SqliteJobStore implements JobStore {
  constructor(private readonly db: Database.Database) {}

  async insertJob(j: JobRow): Promise<void> {
    this.db.prepare(`INSERT INTO jobs (jid, client_id, client_name, multi_job_id, status, command, is_script, interpreter, cwd, timeout_sec, pid, created_by, started_at, finished_at, exit_code, error, stdout, stderr)
      VALUES (@jid, @client_id, @client_name, @multi_job_id, @status, @command, @is_script, @interpreter, @cwd, @timeout_sec, @pid, @created_by, @started_at, @finished_at, @exit_code, @error, @stdout, @stderr)`).run(j);
  }

  async updateJob(jid: string, patch: JobPatch): Promise<void> {
    const keys = Object.keys(patch).filter((k) => PATCHABLE.has(k));
    if (!keys.length) return;
    this.db.prepare(`UPDATE jobs SET ${keys.map((k) => `${k} = @${k}`).join(', ')} WHERE jid = @jid`).run({ ...patch, jid });
  }

  async job(jid: string): Promise<JobRow | undefined> {
    return this.db.prepare('SELECT * FROM jobs WHERE jid = ?').get(jid) as JobRow | undefined;
  }

  async jobsOfClient(clientId: string, limit: number): Promise<JobRow[]> {
    return this.db.prepare('SELECT * FROM jobs WHERE client_id = ? ORDER BY started_at DESC, jid LIMIT ?').all(clientId, limit) as JobRow[];
  }

  async jobsOfMultiJob(multiJobId: string): Promise<JobRow[]> {
    return this.db.prepare('SELECT * FROM jobs WHERE multi_job_id = ? ORDER BY started_at, jid').all(multiJobId) as JobRow[];
  }

  async insertMultiJob(m: MultiJobRow): Promise<void> {
    this.db.prepare('INSERT INTO multi_jobs (jid, created_by, started_at, spec) VALUES (@jid, @created_by, @started_at, @spec)').run(m);
  }

  async multiJob(jid: string): Promise<MultiJobRow | undefined> {
    return this.db.prepare('SELECT * FROM multi_jobs WHERE jid = ?').get(jid) as MultiJobRow | undefined;
  }

  async multiJobs(limit: number): Promise<MultiJobRow[]> {
    return this.db.prepare('SELECT * FROM multi_jobs ORDER BY started_at DESC, jid LIMIT ?').all(limit) as MultiJobRow[];
  }

  async abandonRunning(status: string, error: string): Promise<void> {
    this.db.prepare("UPDATE jobs SET status = ?, error = ? WHERE status = 'running'").run(status, error);
  }
}
