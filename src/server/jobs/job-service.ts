/* eslint-disable max-lines -- the job's life in one place: send, results in parts, budgets, timeouts, fleet jobs */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { errorMessage, type Logger } from '../../log.js';
import type { Control } from '../../transport/control-channel.js';
import { METHOD, type JobDone, type JobPart, type JobRunReply, type JobRunRequest } from '../../transport/protocol.js';
import type { ClientRegistry } from '../client-registry.js';
import type { NodeRow } from '../store/index.js';
import type { JobRow, JobStore, MultiJobRow } from '../store/jobs.js';
import { deadline, type Deadline } from '../../timeout.js';

/** The client answers a job request once the process started (or it refused): a bound on that. */
const DISPATCH_TIMEOUT_MS = 30_000;
/** A job without a result this long after its timeout is shown as unknown (a late result still counts). */
const RESULT_GRACE_MS = 30_000;
/** Bytes of one stream of one result: the client's send_back_limit is at most 16 MiB, plus its marker. */
const MAX_STREAM_BYTES = (16 << 20) + 1024;
/**
 * Bytes of results one client may have arriving at once: one whole result (a client delivers its results
 * one after another), so a client that never finishes its results holds no more than that.
 */
const MAX_CLIENT_ASSEMBLING_BYTES = 2 * MAX_STREAM_BYTES;
/** Bytes of results being assembled over all clients: the server's bound, which no one client can reach. */
const MAX_ASSEMBLING_BYTES = 256 << 20;
/** Live output kept per running job (shown by GET while it runs). */
const MAX_LIVE_CHARS = 1 << 20;
/** A sequential multi-client job looks this often whether a job that another node runs has ended. */
const REMOTE_POLL_MS = 1_000;

/** Has another node of the cluster send a job (its row already stored) to the client it holds; throws, naming the node, when it did not. */
export type RemoteRun = (node: NodeRow, jid: string) => Promise<void>;

export interface JobAsk {
  command: string;
  is_script: boolean;
  interpreter: string;
  cwd: string;
  timeout_sec: number;
}

/** A multi-client job as asked, kept as JSON in its row. */
export interface MultiJobSpec extends JobAsk {
  client_ids: string[];
  tags: { tags: string[]; operator: 'OR' | 'AND' } | null;
  concurrent: boolean;
  abort_on_err: boolean;
}

export interface LiveOutput {
  jid: string;
  client_id: string;
  stdout: string;
  stderr: string;
}

interface Assembly {
  clientId: string;
  /** The connection it arrives on: when that closes, what it sent so far is dropped (a reconnect sends it again). */
  via: Control;
  next: number;
  stdout: Buffer[];
  stderr: Buffer[];
  bytes: number;
}

class RefusedResult extends Error {}

/**
 * Jobs on the server: sends them to clients over their control channel, takes their live output and
 * results, and keeps them in the job store. A client may deliver a result only for its own jobs; a result
 * that arrives after a reconnect (or a restart of rportd) still counts.
 */
export class JobService extends EventEmitter {
  private readonly controls = new Map<string, Control>();
  /** Jobs whose result is awaited: the client that runs them, and the connection they went out on. */
  private readonly owners = new Map<string, { clientId: string; via: Control | undefined }>();
  private readonly assemblies = new Map<string, Assembly>();
  private assemblingBytes = 0;
  private readonly clientAssemblingBytes = new Map<string, number>();
  private readonly live = new Map<string, { stdout: string; stderr: string }>();
  private readonly deadlines = new Map<string, Deadline>();
  private readonly waiters = new Map<string, Array<() => void>>();
  /** How a multi-client job reaches a client held by another node (set where the cluster's API is). */
  remote: RemoteRun | undefined;

  constructor(
    readonly store: JobStore,
    private readonly registry: ClientRegistry,
    private readonly log: Logger,
  ) {
    super();
    this.setMaxListeners(0);
  }

  /** At start: what the last run left running has no one waiting for it now. */
  async init(): Promise<void> {
    await this.store.abandonRunning(
      this.registry.nodeId,
      'unknown',
      'rportd restarted while the job ran: its result is filled in if the client delivers it',
    );
  }

  /** Once stopping, connections closing are the server's own doing: their jobs stay running until the next start says why. */
  private stopping = false;

  stop(): void {
    this.stopping = true;
    for (const d of this.deadlines.values()) d.cancel();
    this.deadlines.clear();
  }

  /** A client's accepted connection: jobs go out on it, and its output and results come in on it. */
  attach(clientId: string, control: Control): void {
    this.controls.set(clientId, control);
    control.handle(METHOD.jobOutput, (p) => this.onOutput(clientId, p));
    control.handle(METHOD.jobPart, (p) => this.onPart(clientId, control, p));
    control.handle(METHOD.jobDone, (p) => this.onDone(clientId, p));
    control.once('close', () => {
      if (this.controls.get(clientId) === control) this.controls.delete(clientId);
      for (const [jid, a] of this.assemblies) if (a.via === control) this.dropAssembly(jid);
      if (this.stopping) return;
      for (const [jid, o] of this.owners) {
        if (o.via !== control) continue;
        o.via = undefined;
        void this.settle(
          jid,
          {
            status: 'unknown',
            error:
              'the client disconnected while the job ran: its result is filled in if the client reconnects and delivers it',
          },
          false,
        );
      }
    });
  }

  /** The live output kept of a running job. */
  liveOutput(jid: string): { stdout: string; stderr: string } | undefined {
    return this.live.get(jid);
  }

  /** Creates the job and sends it to the client; resolves with its row once the client started or refused it. */
  async runOne(clientId: string, ask: JobAsk, createdBy: string, multiJobId: string | null = null): Promise<JobRow> {
    const row = await this.newJob(clientId, ask, createdBy, multiJobId);
    return this.dispatch(row);
  }

  /**
   * Another node created the job (a multi-client job) for a client held here: it goes out from here and this
   * node takes its result. Undefined when the job is not one waiting to be sent.
   */
  async runStored(jid: string): Promise<JobRow | undefined> {
    const row = await this.store.job(jid);
    if (!row || row.status !== 'running' || row.pid !== null || this.owners.has(jid)) return undefined;
    return this.dispatch(row);
  }

  private async newJob(clientId: string, ask: JobAsk, createdBy: string, multiJobId: string | null): Promise<JobRow> {
    const name = (await this.registry.knownName(clientId)) ?? '';
    const row: JobRow = {
      jid: randomUUID(),
      client_id: clientId,
      client_name: name,
      multi_job_id: multiJobId,
      status: 'running',
      command: ask.command,
      is_script: ask.is_script ? 1 : 0,
      interpreter: ask.interpreter,
      cwd: ask.cwd,
      timeout_sec: ask.timeout_sec,
      pid: null,
      created_by: createdBy,
      started_at: Date.now(),
      finished_at: null,
      exit_code: null,
      error: '',
      stdout: '',
      stderr: '',
      node_id: this.registry.nodeId,
    };
    await this.store.insertJob(row);
    return row;
  }

  /** Sends a stored job to its client, when connected here. */
  private async dispatch(row: JobRow): Promise<JobRow> {
    const { jid, client_id: clientId, multi_job_id: multiJobId } = row;
    const control = this.controls.get(clientId);
    if (!control || control.closed) {
      await this.store.updateJob(jid, { status: 'failed', error: 'client is not connected', finished_at: Date.now() });
      this.emit('changed', jid, clientId);
      return (await this.store.job(jid))!;
    }
    this.owners.set(jid, { clientId, via: control });
    if (row.node_id !== this.registry.nodeId) await this.store.updateJob(jid, { node_id: this.registry.nodeId });
    const request: JobRunRequest = {
      jid,
      command: row.command,
      is_script: row.is_script === 1,
      interpreter: row.interpreter,
      cwd: row.cwd,
      timeout_sec: row.timeout_sec,
    };
    this.log.info(
      `job ${jid}: ${request.is_script ? 'script' : `command ${JSON.stringify(request.command)}`} to client ${clientId}, by ${row.created_by}${multiJobId ? ` (multi-client job ${multiJobId})` : ''}`,
    );
    try {
      const reply = await control.request<JobRunReply>(METHOD.jobRun, request, DISPATCH_TIMEOUT_MS);
      const pid = Number.isInteger(reply?.pid) ? reply.pid : null;
      if (this.owners.has(jid)) await this.store.updateJob(jid, { pid });
      if (this.owners.has(jid)) {
        this.deadlines.set(
          jid,
          deadline(row.timeout_sec * 1000 + RESULT_GRACE_MS, `job ${jid} result`, () => {
            void this.settle(
              jid,
              { status: 'unknown', error: `no result from the client within timeout_sec + ${RESULT_GRACE_MS / 1000}s` },
              false,
            );
          }),
        );
      }
    } catch (err) {
      // Refused by the client (its filter, scripts off, ...) or the connection failed: either way the job did not run.
      this.log.info(`job ${jid}: client ${clientId} did not run it: ${errorMessage(err)}`);
      await this.settle(jid, { status: 'failed', error: errorMessage(err), finished_at: Date.now() }, true);
    }
    this.emit('changed', jid, clientId);
    return (await this.store.job(jid))!;
  }

  /**
   * Resolves once the job is no longer running (done, failed, or unknown). A job that another node runs is
   * looked up in the store until then, at most its timeout_sec and the grace after the dispatch bound: that
   * node may be gone, and the row then still says running.
   */
  async waitDone(jid: string): Promise<JobRow> {
    let row = await this.store.job(jid);
    if (!row || row.status !== 'running') return row!;
    if (this.owners.has(jid)) {
      await new Promise<void>((resolve) => this.waiters.set(jid, [...(this.waiters.get(jid) ?? []), resolve]));
      return (await this.store.job(jid))!;
    }
    const end = Date.now() + DISPATCH_TIMEOUT_MS + row.timeout_sec * 1000 + RESULT_GRACE_MS;
    while (row.status === 'running' && Date.now() < end && !this.stopping) {
      await new Promise((r) => setTimeout(r, REMOTE_POLL_MS));
      row = (await this.store.job(jid)) ?? row;
    }
    return row;
  }

  /** One client's job of a multi-client job: sent from here, or by the node that holds the client. */
  private async runOnHolder(clientId: string, ask: JobAsk, createdBy: string, multiJobId: string): Promise<JobRow> {
    const node = this.remote && !this.controls.has(clientId) ? await this.registry.holder(clientId) : undefined;
    if (!node) return this.runOne(clientId, ask, createdBy, multiJobId);
    const row = await this.newJob(clientId, ask, createdBy, multiJobId);
    try {
      await this.remote!(node, row.jid);
      this.log.info(`job ${row.jid}: sent to client ${clientId} by node ${node.id} (multi-client job ${multiJobId})`);
    } catch (err) {
      this.log.info(
        `job ${row.jid}: node ${node.id}, which holds client ${clientId}, did not send it: ${errorMessage(err)}`,
      );
      await this.store.updateJob(row.jid, { status: 'failed', error: errorMessage(err), finished_at: Date.now() });
    }
    this.emit('changed', row.jid, clientId);
    return (await this.store.job(row.jid))!;
  }

  /** Creates a multi-client job and runs it in the background (concurrently, or one client after the other). */
  async runMulti(spec: MultiJobSpec, createdBy: string): Promise<MultiJobRow> {
    const m: MultiJobRow = {
      jid: randomUUID(),
      created_by: createdBy,
      started_at: Date.now(),
      spec: JSON.stringify(spec),
    };
    await this.store.insertMultiJob(m);
    const ask: JobAsk = {
      command: spec.command,
      is_script: spec.is_script,
      interpreter: spec.interpreter,
      cwd: spec.cwd,
      timeout_sec: spec.timeout_sec,
    };
    const run = async () => {
      if (spec.concurrent) {
        await Promise.all(spec.client_ids.map((id) => this.runOnHolder(id, ask, createdBy, m.jid)));
        return;
      }
      for (const id of spec.client_ids) {
        const started = await this.runOnHolder(id, ask, createdBy, m.jid);
        const row = started.status === 'running' ? await this.waitDone(started.jid) : started;
        // As RPort: an offline client does not abort the rest.
        if (spec.abort_on_err && row.status === 'failed' && row.error !== 'client is not connected') {
          this.log.info(
            `multi-client job ${m.jid}: aborted after job ${row.jid} on client ${id} failed (abort_on_error)`,
          );
          return;
        }
      }
    };
    void run().catch((err) => this.log.error(`multi-client job ${m.jid}: ${errorMessage(err)}`));
    return m;
  }

  /**
   * A job leaves `running`: final (a result or a refusal) ends the wait for a result; otherwise (disconnected,
   * no result in time) it shows `unknown` and a result may still come.
   */
  private async settle(jid: string, patch: Parameters<JobStore['updateJob']>[1], final: boolean): Promise<void> {
    const owner = this.owners.get(jid);
    if (final) {
      this.owners.delete(jid);
      this.dropAssembly(jid);
      this.live.delete(jid);
      this.deadlines.get(jid)?.cancel();
      this.deadlines.delete(jid);
    } else {
      const row = await this.store.job(jid);
      if (row?.status !== 'running') return;
    }
    await this.store.updateJob(jid, patch);
    for (const w of this.waiters.get(jid) ?? []) w();
    this.waiters.delete(jid);
    this.emit('changed', jid, owner?.clientId);
  }

  /** Whether the job is this client's and still awaits a result (also after a restart of rportd: from the store). */
  private async owns(clientId: string, jid: unknown): Promise<string> {
    if (typeof jid !== 'string' || jid.length > 64) throw new RefusedResult('malformed jid');
    const o = this.owners.get(jid);
    if (o) {
      if (o.clientId !== clientId) throw new RefusedResult(`job ${jid} is not this client's`);
      return jid;
    }
    const row = await this.store.job(jid);
    if (
      !row ||
      row.client_id !== clientId ||
      row.finished_at !== null ||
      (row.status !== 'running' && row.status !== 'unknown')
    ) {
      throw new RefusedResult(`job ${jid} is not one of this client's jobs awaiting a result`);
    }
    this.owners.set(jid, { clientId, via: this.controls.get(clientId) });
    return jid;
  }

  private async onOutput(clientId: string, params: unknown): Promise<null> {
    const jobs = (params as { jobs?: unknown })?.jobs;
    if (!Array.isArray(jobs)) throw new RefusedResult('malformed job output');
    for (const j of jobs as Array<{ jid?: unknown; stdout?: unknown; stderr?: unknown }>) {
      if (typeof j?.jid !== 'string' || this.owners.get(j.jid)?.clientId !== clientId) continue;
      const stdout = typeof j.stdout === 'string' ? j.stdout : '';
      const stderr = typeof j.stderr === 'string' ? j.stderr : '';
      const kept = this.live.get(j.jid) ?? { stdout: '', stderr: '' };
      // Only what is kept goes to the event streams too: a client's flood of live output is bounded per job
      // there as well (a stream that reads slowly buffers it), and the whole output is in the result.
      const out = stdout.slice(0, Math.max(0, MAX_LIVE_CHARS - kept.stdout.length));
      const err = stderr.slice(0, Math.max(0, MAX_LIVE_CHARS - kept.stderr.length));
      kept.stdout += out;
      kept.stderr += err;
      this.live.set(j.jid, kept);
      if (out || err)
        this.emit('output', { jid: j.jid, client_id: clientId, stdout: out, stderr: err } satisfies LiveOutput);
    }
    return null;
  }

  private dropAssembly(jid: string): void {
    const a = this.assemblies.get(jid);
    if (!a) return;
    this.charge(a.clientId, -a.bytes);
    this.assemblies.delete(jid);
  }

  private charge(clientId: string, bytes: number): void {
    this.assemblingBytes += bytes;
    const left = (this.clientAssemblingBytes.get(clientId) ?? 0) + bytes;
    if (left > 0) this.clientAssemblingBytes.set(clientId, left);
    else this.clientAssemblingBytes.delete(clientId);
  }

  private async onPart(clientId: string, via: Control, params: unknown): Promise<null> {
    const p = (params ?? {}) as Partial<Record<keyof JobPart, unknown>>;
    const jid = await this.owns(clientId, p.jid);
    if (typeof p.seq !== 'number' || (p.stream !== 'stdout' && p.stream !== 'stderr') || typeof p.data !== 'string')
      throw new RefusedResult('malformed result part');
    if (p.seq === 0) this.dropAssembly(jid);
    const a = this.assemblies.get(jid) ?? { clientId, via, next: 0, stdout: [], stderr: [], bytes: 0 };
    a.via = via;
    if (p.seq !== a.next)
      throw new RefusedResult(`result part ${p.seq} of job ${jid} out of order (expected ${a.next})`);
    const data = Buffer.from(p.data, 'base64');
    const streamBytes = a[p.stream].reduce((n, b) => n + b.length, 0) + data.length;
    const over =
      streamBytes > MAX_STREAM_BYTES
        ? `the ${p.stream} of job ${jid} is over ${MAX_STREAM_BYTES} bytes`
        : (this.clientAssemblingBytes.get(clientId) ?? 0) + data.length > MAX_CLIENT_ASSEMBLING_BYTES
          ? `client ${clientId} has over ${MAX_CLIENT_ASSEMBLING_BYTES} bytes of unfinished results: finish one before sending the next`
          : this.assemblingBytes + data.length > MAX_ASSEMBLING_BYTES
            ? 'too many results arriving at once: try again later'
            : undefined;
    if (over) {
      // The client drops a refused result: what arrived of it would only hold the client's budget.
      this.dropAssembly(jid);
      throw new RefusedResult(over);
    }
    a[p.stream].push(data);
    a.bytes += data.length;
    a.next++;
    this.charge(clientId, data.length);
    this.assemblies.set(jid, a);
    return null;
  }

  private async onDone(clientId: string, params: unknown): Promise<null> {
    const d = (params ?? {}) as Partial<Record<keyof JobDone, unknown>>;
    const jid = await this.owns(clientId, d.jid);
    const time = (t: unknown) => (typeof t === 'number' && Number.isFinite(t) ? Math.round(t) : Date.now());
    if ((d.status !== 'successful' && d.status !== 'failed') || typeof d.parts !== 'number')
      throw new RefusedResult('malformed job end');
    const a = this.assemblies.get(jid) ?? { next: 0, stdout: [], stderr: [] };
    if (a.next !== d.parts) throw new RefusedResult(`job ${jid} ended with ${a.next} of its ${d.parts} result parts`);
    await this.settle(
      jid,
      {
        status: d.status,
        exit_code: typeof d.exit_code === 'number' && Number.isInteger(d.exit_code) ? d.exit_code : null,
        error: typeof d.error === 'string' ? d.error.slice(0, 4096) : '',
        started_at: time(d.started_at),
        finished_at: time(d.finished_at),
        stdout: Buffer.concat(a.stdout).toString('utf8'),
        stderr: Buffer.concat(a.stderr).toString('utf8'),
      },
      true,
    );
    this.log.info(`job ${jid}: ${d.status} on client ${clientId}`);
    return null;
  }
}
