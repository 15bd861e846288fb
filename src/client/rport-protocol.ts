import { randomUUID } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import type ssh2 from 'ssh2';
import { parseRemoteSpec } from '../shared/host-port.js';
import { errorMessage } from '../log.js';
import { MAX_LINE, RemoteError, type Control } from '../transport/control-channel.js';
import { GlobalRequestControl, type GlobalRequests } from '../transport/global-request.js';
import {
  METHOD,
  RPORT_IDENT,
  RPORT_REQUEST,
  type ConnectReply,
  type ConnectRequest,
  type JobDone,
  type JobPart,
  type JobRunReply,
  type JobRunRequest,
  type RportConnectionRequest,
  type RportJob,
} from '../transport/protocol.js';

/** RPort's client sends one SessionID per process: the server tells a reconnect from a second process by it. */
const SESSION_ID = randomUUID();

/** Whether the server spoke RPort's identification line (a stock rportd) rather than ssh2's (rportd). */
export function speaksRport(ssh: ssh2.Client): boolean {
  // The ssh2 patch keeps the peer's identification line; the protocol object is ssh2's own.
  const raw = (ssh as unknown as { _protocol?: { _remoteIdentRaw?: Buffer } })._protocol?._remoteIdentRaw;
  return raw?.toString('latin1') === RPORT_IDENT.server;
}

/**
 * Jobs as run_cmd sent them, and the parts of their result, until cmd_result goes out: kept across
 * connections, as the client's jobs keep a result for the next one; the oldest go past MAX_KEPT_JOBS.
 */
const jobs = new Map<string, { job: RportJob; parts: JobPart[] }>();
const MAX_KEPT_JOBS = 200;

/** rport's connection request in RPort's form (Go field names). */
export function rportConnectionRequest(r: ConnectRequest): RportConnectionRequest {
  return {
    ID: r.id,
    Name: r.name,
    SessionID: SESSION_ID,
    OS: r.os,
    OSKernel: r.os,
    OSArch: r.arch,
    Version: r.version,
    Hostname: r.hostname,
    Tags: r.tags,
    Remotes: r.remotes.map((spec) => {
      const s = parseRemoteSpec(spec)!; // checked by the config loader
      return {
        lhost: s.local.host,
        lport: s.local.port ? String(s.local.port) : '',
        rhost: s.remote.host,
        rport: String(s.remote.port),
        protocol: 'tcp',
      };
    }),
  };
}

/** A request of the server: its JSON payload, and the answer (a JSON body, or a refusal with its reason). */
export type RportRequestHandler = (payload: unknown) => unknown;

/**
 * The client's side of RPort's protocol, as the connection loop, tunnels and jobs see a control channel:
 * our methods become RPort's global requests (connect -> new_connection, ping, a finished job -> cmd_result)
 * and RPort's requests of the server reach the handlers set for their names (check_tunnel_allowed,
 * check_port, run_cmd as job.run). What RPort has no message for (live output) is dropped here.
 */
export class RportDialect extends GlobalRequestControl implements Control {
  constructor(
    private readonly ssh: ssh2.Client,
    private readonly debug: (m: string) => void,
  ) {
    super(ssh as unknown as GlobalRequests & EventEmitter);
    // The ssh2 patch's events for RPort's requests and channels, not in its types.
    (ssh as unknown as EventEmitter).on(
      'request',
      (name: string, data: Buffer | undefined, accept: (b?: Buffer) => void, reject: (b?: Buffer) => void) =>
        void this.onRequest(name, data, accept, reject),
    );
    this.handle(
      RPORT_REQUEST.capabilities,
      (caps) => void this.debug(`server capabilities: ${JSON.stringify(caps).slice(0, 200)}`),
    );
    // rport keeps no attributes or update status for the server to refresh: accepted, as a stock client would.
    this.handle(RPORT_REQUEST.updateAttributes, () => undefined);
    this.handle(RPORT_REQUEST.refreshUpdates, () => undefined);
    this.handle(RPORT_REQUEST.runCmd, (p) => this.runCmd(p));
  }

  request<T>(method: string, params: unknown, timeoutMs: number): Promise<T> {
    switch (method) {
      case METHOD.connect:
        return this.ask(RPORT_REQUEST.connect, rportConnectionRequest(params as ConnectRequest), timeoutMs).then(
          () => ({ sessionId: SESSION_ID }) satisfies ConnectReply as T,
        );
      case METHOD.ping:
        return this.ask(RPORT_REQUEST.ping, undefined, timeoutMs).then(() => ({ now: Date.now() }) as T);
      case METHOD.jobPart: {
        const p = params as JobPart;
        const kept = jobs.get(p.jid);
        // Part 0 starts the result afresh: a result re-sent after a reconnect.
        if (kept && p.seq === 0) kept.parts = [];
        kept?.parts.push(p);
        return Promise.resolve(null as T);
      }
      case METHOD.jobDone:
        return this.cmdResult(params as JobDone).then(() => null as T);
      case METHOD.jobOutput:
        // RPort's live output needs stream channels the server asks for; the result carries the output.
        return Promise.resolve(null as T);
      default:
        return Promise.reject(new RemoteError(`an RPort server has no ${method}`));
    }
  }

  /** run_cmd: RPort's Job as our job.run; answered {Pid, StartedAt}. */
  private async runCmd(p: unknown): Promise<unknown> {
    const job = p as Partial<RportJob>;
    const run = this.handlers.get(METHOD.jobRun);
    if (!run) throw new Error('remote commands are not served');
    const req: JobRunRequest = {
      jid: job.jid as string,
      command: job.command as string,
      is_script: job.is_script as boolean,
      interpreter: job.interpreter ?? '',
      cwd: job.cwd ?? '',
      timeout_sec: job.timeout_sec as number,
    };
    jobs.set(String(job.jid), { job: job as RportJob, parts: [] });
    for (const old of jobs.keys()) {
      if (jobs.size <= MAX_KEPT_JOBS) break;
      jobs.delete(old);
    }
    try {
      const r = (await run(req)) as JobRunReply;
      return { Pid: r.pid, StartedAt: new Date(r.started_at).toISOString() };
    } catch (err) {
      jobs.delete(String(job.jid));
      throw err;
    }
  }

  /** A finished job goes back as RPort's Job with its result (cmd_result has no answer). */
  private async cmdResult(d: JobDone): Promise<void> {
    const kept = jobs.get(d.jid);
    if (!kept) throw new RemoteError(`job ${d.jid} is not known (more than ${MAX_KEPT_JOBS} jobs came after it)`);
    const text = (stream: 'stdout' | 'stderr') =>
      Buffer.concat(
        kept.parts
          .filter((p) => p.stream === stream)
          .sort((a, b) => a.seq - b.seq)
          .map((p) => Buffer.from(p.data, 'base64')),
      ).toString('utf8');
    const stdout = text('stdout');
    const job: RportJob = {
      ...kept.job,
      status: d.status,
      pid: kept.job.pid ?? null,
      started_at: new Date(d.started_at).toISOString(),
      finished_at: new Date(d.finished_at).toISOString(),
      error: d.error,
      result: { stdout, stderr: text('stderr'), summary: stdout.slice(0, 100) },
    };
    if (this.closedWith) throw this.closedWith;
    (this.ssh as unknown as GlobalRequests).globalRequest(RPORT_REQUEST.cmdResult, Buffer.from(JSON.stringify(job)));
    jobs.delete(d.jid);
  }

  /** A request of the server: JSON in, JSON or the reason out, as RPort's client answers. */
  private async onRequest(
    name: string,
    data: Buffer | undefined,
    accept: (b?: Buffer) => void,
    reject: (b?: Buffer) => void,
  ): Promise<void> {
    // Answered empty, as RPort's client does (the server measures the round trip).
    if (name === RPORT_REQUEST.ping) return accept();
    const handler = this.handlers.get(name);
    if (!handler) return reject(Buffer.from('unknown request'));
    if (data && data.length > MAX_LINE) return reject(Buffer.from(`request over ${MAX_LINE >> 10} KiB`));
    let payload: unknown;
    try {
      payload = data?.length ? JSON.parse(data.toString('utf8')) : undefined;
    } catch {
      return reject(Buffer.from(`${name}: not JSON`));
    }
    try {
      const answer = await handler(payload);
      // Notices are answered empty, as RPort's client does; the others with their JSON.
      accept(answer === undefined ? undefined : Buffer.from(JSON.stringify(answer)));
    } catch (err) {
      this.debug(`${name} refused: ${errorMessage(err)}`);
      reject(Buffer.from(errorMessage(err)));
    }
  }
}
