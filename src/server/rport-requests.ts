/* eslint-disable max-lines -- a stock RPort client's whole protocol as one control channel: every request and channel type beside the limits they share */
import type { EventEmitter } from 'node:events';
import type ssh2 from 'ssh2';
import { errorMessage, type LogLimiter, type Logger } from '../log.js';
import { VERSION } from '../version.js';
import { MAX_LINE, RateBucket, RemoteError, type Control } from '../transport/control-channel.js';
import { GlobalRequestControl, type GlobalRequests } from '../transport/global-request.js';
import {
  METHOD,
  RPORT_CHANNEL,
  RPORT_REFUSAL,
  RPORT_REQUEST,
  type JobDone,
  type JobPart,
  type JobRunReply,
  type JobRunRequest,
  type RportJob,
  type TunnelOpenRequest,
} from '../transport/protocol.js';
import type { Metrics } from './metrics.js';
import type { Forward } from './tunnels/index.js';

/** An answer to a request of the peer: data on success, the reason on failure (RPort's client shows it). */
export type Accept = ((data?: Buffer) => void) | undefined;
export type Reject = ((why?: Buffer) => void) | undefined;

/** What the server keeps of a stock client's job output channels: live output only, the result comes whole. */
const MAX_OUTPUT_CHANNELS = 64;

/**
 * A stock RPort client's connection seen as rport's control channel: the server's parts ask by method (ping,
 * tunnel.open, job.run) and are told (job.output, job.part, job.done) as with an rport client, and this class
 * speaks RPort's global requests and channels for them. Every request of the client has the size and rate
 * limits of rport's own messages; too many, too large or malformed end the connection.
 */
export class RPortRequests extends GlobalRequestControl implements Control {
  /** Tunnel ids the client agreed to carry, and what it dials for each (RPort's channel names the target). */
  private readonly remotes = new Map<string, string>();
  private readonly rate: RateBucket;
  private outputChannels = 0;

  constructor(
    private readonly ssh: ssh2.Connection,
    private readonly ip: string,
    public clientId: string,
    private readonly c: { log: Logger; limited: LogLimiter; metrics: Metrics },
    messagesPerSecond: number,
  ) {
    super(ssh as unknown as GlobalRequests & EventEmitter);
    this.rate = new RateBucket(messagesPerSecond);
  }

  /** Sent once after the connection request: no monitoring and no IP address reports, rportd keeps neither. */
  sendCapabilities(): void {
    const caps = { ServerVersion: VERSION, MonitoringVersion: 0, IPAddressesVersion: 0 };
    (this.ssh as unknown as GlobalRequests).globalRequest(
      RPORT_REQUEST.capabilities,
      Buffer.from(JSON.stringify(caps)),
    );
  }

  /** Our methods as RPort's requests. */
  request<T>(method: string, params: unknown, timeoutMs: number): Promise<T> {
    switch (method) {
      case METHOD.ping:
        return this.ask(RPORT_REQUEST.ping, undefined, timeoutMs).then(() => ({ now: Date.now() }) as T);
      case METHOD.tunnelOpen: {
        const p = params as TunnelOpenRequest;
        return this.ask(RPORT_REQUEST.checkTunnelAllowed, { Remote: p.remote }, timeoutMs).then((answer) => {
          if ((answer as { IsAllowed?: unknown })?.IsAllowed !== true)
            throw new RemoteError(`tunnel to ${p.remote} is not allowed by the client's tunnel_allowed`);
          this.remotes.set(p.id, p.remote);
          return null as T;
        });
      }
      case METHOD.tunnelClose:
        this.remotes.delete((params as { id: string }).id);
        return Promise.resolve(null as T);
      case METHOD.jobRun:
        return this.ask(RPORT_REQUEST.runCmd, this.job(params as JobRunRequest), timeoutMs).then((answer) => {
          const a = (answer ?? {}) as { Pid?: unknown; StartedAt?: unknown };
          const started = typeof a.StartedAt === 'string' ? Date.parse(a.StartedAt) : NaN;
          return {
            pid: Number.isInteger(a.Pid) ? (a.Pid as number) : 0,
            started_at: Number.isFinite(started) ? started : Date.now(),
          } satisfies JobRunReply as T;
        });
      default:
        return Promise.reject(new RemoteError(`an RPort client has no ${method}`));
    }
  }

  /**
   * RPort's check_port for a tunnel's target: the client dials it and says whether it answered. (Its client
   * accepts an `rport` channel before it dials, so a channel cannot tell.) Rejects with the client's reason.
   */
  async checkPort(tunnelId: string, timeoutMs: number): Promise<void> {
    const remote = this.remotes.get(tunnelId);
    if (!remote) throw new Error(`tunnel ${tunnelId} is not open on this client`);
    // The client's own dial gets most of the time (a Go duration, in nanoseconds); the answer the rest.
    const body = { HostPort: remote, Timeout: Math.floor(timeoutMs * 0.8) * 1e6 };
    const answer = (await this.ask(RPORT_REQUEST.checkPort, body, timeoutMs)) as { Open?: unknown; ErrMsg?: unknown };
    if (answer?.Open !== true)
      throw new RemoteError(
        typeof answer?.ErrMsg === 'string' && answer.ErrMsg ? answer.ErrMsg : 'the port is not open',
      );
  }

  /** RPort's refresh_updates_status: the client checks its package manager and then sends updates_status. */
  async refreshUpdates(timeoutMs: number): Promise<void> {
    await this.ask(RPORT_REQUEST.refreshUpdates, undefined, timeoutMs);
  }

  /** The channel of one tunnel connection: RPort's `rport` type, with the target as its extra data. */
  readonly forward: Forward = (tunnelId, _ip, _port, cb) => {
    const remote = this.remotes.get(tunnelId);
    if (!remote) return void process.nextTick(cb, new Error(`tunnel ${tunnelId} is not open on this client`));
    (this.ssh as unknown as SshRport).openChannel(RPORT_CHANNEL.tunnel, Buffer.from(remote), cb);
  };

  /** A global request of the client, after its connection request was accepted. */
  onRequest(name: string, data: Buffer | undefined, accept: Accept, reject: Reject): void {
    if (!this.rate.take()) return this.refuse(name, `more than ${this.rate.perSecond} requests a second`, true);
    if (data && data.length > MAX_LINE)
      return this.refuse(name, `${data.length} bytes, over ${MAX_LINE >> 10} KiB`, true);
    this.emit('activity');
    switch (name) {
      case RPORT_REQUEST.ping:
        accept?.();
        void this.tell(METHOD.ping, {});
        return;
      case RPORT_REQUEST.cmdResult:
        accept?.();
        void this.onResult(data);
        return;
      case RPORT_REQUEST.connect:
        // As RPort: a second connection request means the client missed the answer to its first.
        reject?.(Buffer.from(`unexpected connection request. ${RPORT_REFUSAL.reconnect}`));
        return this.refuse(name, 'a second connection request on one connection', true);
      case RPORT_REQUEST.updatesStatus: {
        const status = this.json(name, data);
        if (!status) return reject?.();
        try {
          this.emit('updates', checkUpdatesStatus(status as Record<string, unknown>));
          accept?.();
        } catch (err) {
          reject?.(Buffer.from(errorMessage(err)));
          this.refuse(name, errorMessage(err), false);
        }
        return;
      }
      case RPORT_REQUEST.saveMeasurement:
      case RPORT_REQUEST.ipAddresses:
        // Reports rportd has no place for yet: accepted (the client sends them again later) and not kept.
        if (!this.json(name, data)) return;
        this.c.log.debug(`client ${this.clientId}: ${name} accepted, not kept`);
        accept?.();
        return;
      default:
        reject?.(Buffer.from('unknown request'));
        this.refuse(name, 'not a request rportd takes', false);
    }
  }

  /** A channel the client opens: a job's live output; any other type is refused (RPort's server dialed them). */
  onChannel(type: string, data: Buffer | undefined, accept: () => ssh2.Channel, reject: (code?: number) => void): void {
    if (type !== RPORT_CHANNEL.stdout && type !== RPORT_CHANNEL.stderr) {
      reject(1); // SSH_OPEN_ADMINISTRATIVELY_PROHIBITED
      const shown = type.slice(0, 64);
      return this.refuse(
        `${shown} channel`,
        `channels of type "${shown}" are not taken (a client may not make the server dial)`,
        false,
      );
    }
    const job = this.json(`${type} channel`, data) as Partial<RportJob> | undefined;
    if (!job || typeof job.jid !== 'string' || this.outputChannels >= MAX_OUTPUT_CHANNELS) return reject();
    this.outputChannels++;
    const channel = accept();
    const jid = job.jid;
    channel.setEncoding('utf8');
    channel.on('data', (text: string) => {
      if (!this.rate.take())
        return this.refuse(`${type} channel`, `more than ${this.rate.perSecond} messages a second`, true);
      void this.tell(METHOD.jobOutput, {
        jobs: [
          { jid, stdout: type === RPORT_CHANNEL.stdout ? text : '', stderr: type === RPORT_CHANNEL.stderr ? text : '' },
        ],
      });
    });
    channel.once('close', () => this.outputChannels--);
  }

  /** RPort's Job for one of ours. */
  private job(r: JobRunRequest): RportJob {
    return {
      jid: r.jid,
      client_id: this.clientId,
      command: r.command,
      cwd: r.cwd,
      interpreter: r.interpreter,
      timeout_sec: r.timeout_sec,
      is_script: r.is_script,
      is_sudo: false,
      stream_result: true,
      started_at: new Date().toISOString(),
    };
  }

  /** A finished job: its output as the parts and the end an rport client sends. */
  private async onResult(data: Buffer | undefined): Promise<void> {
    const job = this.json(RPORT_REQUEST.cmdResult, data) as Partial<RportJob> | undefined;
    if (!job) return;
    const time = (t: unknown) => (typeof t === 'string' && Number.isFinite(Date.parse(t)) ? Date.parse(t) : Date.now());
    const parts: JobPart[] = [];
    for (const stream of ['stdout', 'stderr'] as const) {
      const text = job.result?.[stream];
      if (typeof text === 'string' && text)
        parts.push({ jid: String(job.jid), seq: parts.length, stream, data: Buffer.from(text).toString('base64') });
    }
    // RPort's "unknown" is a job past its timeout that it stopped watching: no exit to report.
    const done: JobDone = {
      jid: String(job.jid),
      parts: parts.length,
      status: job.status === 'successful' ? 'successful' : 'failed',
      exit_code: job.status === 'successful' ? 0 : null,
      error: typeof job.error === 'string' ? job.error : '',
      started_at: time(job.started_at),
      finished_at: time(job.finished_at),
    };
    try {
      for (const p of parts) await this.tell(METHOD.jobPart, p, true);
      await this.tell(METHOD.jobDone, done, true);
    } catch (err) {
      this.refuse(
        RPORT_REQUEST.cmdResult,
        `the result of job ${String(job.jid).slice(0, 64)} is not taken: ${errorMessage(err)}`,
        false,
      );
    }
  }

  private async tell(method: string, params: unknown, rethrow = false): Promise<void> {
    try {
      await this.handlers.get(method)?.(params);
    } catch (err) {
      if (rethrow) throw err;
    }
  }

  /** A request's JSON, or undefined after logging and counting it. */
  private json(what: string, data: Buffer | undefined): unknown {
    try {
      const v = JSON.parse((data ?? Buffer.alloc(0)).toString('utf8')) as unknown;
      if (typeof v === 'object' && v !== null) return v;
    } catch {
      // refused below
    }
    this.refuse(what, 'not a JSON object', false);
    return undefined;
  }

  private refuse(what: string, why: string, fatal: boolean): void {
    const kind = what.replace(/[^a-z_ -]/gi, '').slice(0, 32);
    this.c.metrics.messagesRefused.inc({ kind });
    // Rate-limited: a peer can repeat these at will.
    this.c.limited.warn(
      `refused ${kind}`,
      `refused ${what} from client ${this.clientId} (${this.ip}): ${why}${fatal ? ': closing the connection' : ''}`,
    );
    if (fatal) {
      this.shutdown(new Error(`${what}: ${why}`));
      this.ssh.end();
    }
  }
}

const MAX_SUMMARIES = 10_000;
const isCount = (x: unknown) => Number.isInteger(x) && (x as number) >= 0 && (x as number) <= 1e6;
const isText = (x: unknown) => x === undefined || (typeof x === 'string' && x.length <= 4096);

/**
 * RPort's UpdatesStatus as rportd keeps it (the API shows it as RPort's does): its fields checked, any other
 * dropped. Throws the first bad field.
 */
export function checkUpdatesStatus(v: Record<string, unknown>): string {
  const bad = (field: string, what: string) => new Error(`updates_status field "${field}" must be ${what}`);
  if (typeof v.refreshed !== 'string' || !Number.isFinite(Date.parse(v.refreshed))) throw bad('refreshed', 'a time');
  for (const f of ['updates_available', 'security_updates_available'])
    if (!isCount(v[f])) throw bad(f, 'a count from 0 to 1000000');
  if (typeof v.reboot_pending !== 'boolean') throw bad('reboot_pending', 'true or false');
  for (const f of ['error', 'hint']) if (!isText(v[f])) throw bad(f, 'text of at most 4096 characters');
  const list = v.update_summaries ?? null;
  if (list !== null && (!Array.isArray(list) || list.length > MAX_SUMMARIES))
    throw bad('update_summaries', `a list of at most ${MAX_SUMMARIES}`);
  const summaries = list?.map((s: unknown, i) => {
    const o = (typeof s === 'object' && s !== null ? s : {}) as Record<string, unknown>;
    if (!isText(o.title) || !isText(o.description) || typeof o.reboot_required !== 'boolean')
      throw bad(`update_summaries[${i}]`, 'a title, a description and reboot_required');
    if (typeof o.is_security_update !== 'boolean') throw bad(`update_summaries[${i}].is_security_update`, 'a boolean');
    const { title, description, reboot_required, is_security_update } = o;
    return { title, description, reboot_required, is_security_update };
  });
  const { refreshed, updates_available, security_updates_available, reboot_pending, error, hint } = v;
  return JSON.stringify({
    refreshed,
    updates_available,
    security_updates_available,
    update_summaries: summaries ?? null,
    reboot_pending,
    error,
    hint,
  });
}

/** What the ssh2 patch adds to a server-side connection. */
interface SshRport {
  openChannel(type: string, data: Buffer, cb: (err: Error | undefined, channel: ssh2.Channel) => void): void;
}
