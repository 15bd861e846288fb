import { StringDecoder } from 'node:string_decoder';
import type { CommandsConfig } from '../../config/client-config.js';
import { errorMessage, type Logger } from '../../log.js';
import { sleep } from '../../timeout.js';
import { RemoteError, type Control } from '../../transport/control-channel.js';
import {
  MAX_JOB_TIMEOUT_SEC,
  METHOD,
  type JobDone,
  type JobOutput,
  type JobPart,
  type JobRunReply,
  type JobRunRequest,
} from '../../transport/protocol.js';
import { checkCommand } from './filter.js';
import { JobRefused, killTree, startJob } from './runner.js';

/** Live output goes out at most this often, all running jobs in one message. */
const FLUSH_MS = 200;
/** Gap between two job messages: at most 50 a second, far below the server's limit of 200 (pings go besides). */
const MIN_GAP_MS = 20;
/** Characters of live output in one message: JSON escaping may grow it sixfold and a message is at most 256 KiB. */
const LIVE_MAX_CHARS = 32 << 10;
/** Bytes of a result part (base64: 128 KiB). */
const PART_BYTES = 96 << 10;
const REQUEST_TIMEOUT_MS = 30_000;
const MAX_RUNNING = 32;
/** Results kept for the next connection while the server cannot be told; the oldest go first past either bound. */
const MAX_UNDELIVERED = 100;
const MAX_UNDELIVERED_BYTES = 128 << 20;
const JID = /^[A-Za-z0-9._-]{1,64}$/;

interface Running {
  pid: number;
  stdout: StringDecoder;
  stderr: StringDecoder;
  live: { stdout: string; stderr: string };
}

interface Delivery {
  parts: JobPart[];
  done: JobDone;
  bytes: number;
}

function validRun(params: unknown): JobRunRequest {
  const p = (params ?? {}) as Partial<Record<keyof JobRunRequest, unknown>>;
  const bad = (what: string) => new JobRefused(`malformed job request: ${what}`);
  if (typeof p.jid !== 'string' || !JID.test(p.jid)) throw bad('jid');
  if (typeof p.command !== 'string' || !p.command) throw bad('command');
  if (typeof p.is_script !== 'boolean') throw bad('is_script');
  if (typeof p.interpreter !== 'string' || typeof p.cwd !== 'string') throw bad('interpreter or cwd');
  if (
    typeof p.timeout_sec !== 'number' ||
    !Number.isInteger(p.timeout_sec) ||
    p.timeout_sec < 1 ||
    p.timeout_sec > MAX_JOB_TIMEOUT_SEC
  )
    throw bad('timeout_sec');
  return p as JobRunRequest;
}

function toParts(jid: string, stdout: Buffer, stderr: Buffer): JobPart[] {
  const parts: JobPart[] = [];
  for (const [stream, b] of [
    ['stdout', stdout],
    ['stderr', stderr],
  ] as const) {
    for (let i = 0; i < b.length; i += PART_BYTES)
      parts.push({ jid, seq: parts.length, stream, data: b.subarray(i, i + PART_BYTES).toString('base64') });
  }
  return parts;
}

/**
 * The client's side of remote commands and scripts: checks each request against [remote-commands] and
 * [remote-scripts] (the client decides, whatever the server asks), runs it, streams its output paced so
 * that pings are never held up, and delivers its result, after a reconnect if need be.
 */
export class ClientJobs {
  private readonly running = new Map<string, Running>();
  /** Jobs between their checks and their start: counted with `running`, so requests arriving together cannot all pass the limit. */
  private readonly starting = new Set<string>();
  private readonly undelivered = new Map<string, Delivery>();
  private control: Control | undefined;
  private readonly flusher: NodeJS.Timeout;
  private flushing = false;
  private delivering = false;
  private nextSendAt = 0;

  constructor(
    private readonly cfg: CommandsConfig,
    private readonly log: Logger,
  ) {
    this.flusher = setInterval(() => void this.flushLive(), FLUSH_MS);
    this.flusher.unref();
  }

  /** A new connection, before its connection request: the server may send jobs as soon as it accepts. */
  attach(control: Control): void {
    control.handle(METHOD.jobRun, (params) => this.onRun(params));
  }

  /** The connection request was accepted: output and results go here now; results kept from before go first. */
  online(control: Control): void {
    this.control = control;
    control.once('close', () => {
      if (this.control === control) this.control = undefined;
    });
    void this.deliver();
  }

  /** The client stops: what still runs is killed. */
  stop(): void {
    clearInterval(this.flusher);
    for (const r of this.running.values()) killTree(r.pid);
  }

  private async onRun(params: unknown): Promise<JobRunReply> {
    let job: JobRunRequest;
    try {
      job = validRun(params);
      const what = job.is_script ? 'script' : 'command';
      if (!this.cfg.enabled)
        throw new JobRefused('remote commands execution is disabled ([remote-commands] enabled = false)');
      if (job.is_script && !this.cfg.scriptsEnabled)
        throw new JobRefused('remote scripts are disabled ([remote-scripts] enabled = false)');
      if (!job.is_script) {
        const d = checkCommand(this.cfg, job.command);
        if (!d.allowed) throw new JobRefused(`command is not allowed: ${JSON.stringify(job.command)}: ${d.reason}`);
        this.log.info(`job ${job.jid}: command ${JSON.stringify(job.command)} allowed: ${d.reason}`);
      }
      if (this.running.has(job.jid) || this.starting.has(job.jid) || this.undelivered.has(job.jid))
        throw new JobRefused(`job ${job.jid} is known already`);
      if (this.running.size + this.starting.size >= MAX_RUNNING)
        throw new JobRefused(`${MAX_RUNNING} jobs are running already: try again later`);
      const r: Running = {
        pid: 0,
        stdout: new StringDecoder('utf8'),
        stderr: new StringDecoder('utf8'),
        live: { stdout: '', stderr: '' },
      };
      this.starting.add(job.jid);
      let started;
      try {
        started = await startJob(
          {
            command: job.command,
            isScript: job.is_script,
            interpreter: job.interpreter,
            cwd: job.cwd,
            timeoutMs: job.timeout_sec * 1000,
            sendBackLimit: this.cfg.sendBackLimit,
            aliases: this.cfg.aliases,
            useShell: this.cfg.useShell,
          },
          (stream, chunk) => {
            r.live[stream] += r[stream].write(chunk);
          },
        );
      } finally {
        this.starting.delete(job.jid);
      }
      r.pid = started.pid;
      this.running.set(job.jid, r);
      this.log.info(
        `job ${job.jid}: ${what} started as pid ${started.pid}${job.interpreter ? ` with ${job.interpreter}` : ''}, timeout ${job.timeout_sec}s`,
      );
      void started.done.then((o) => {
        this.running.delete(job.jid);
        this.log.info(
          `job ${job.jid}: ${o.status}${o.error ? ` (${o.error})` : ''} after ${o.finishedAt - o.startedAt}ms, ${o.stdout.length} bytes of stdout, ${o.stderr.length} of stderr`,
        );
        const parts = toParts(job.jid, o.stdout, o.stderr);
        this.keep(job.jid, {
          parts,
          done: {
            jid: job.jid,
            parts: parts.length,
            status: o.status,
            exit_code: o.exitCode,
            error: o.error,
            started_at: o.startedAt,
            finished_at: o.finishedAt,
          },
          bytes: o.stdout.length + o.stderr.length,
        });
        void this.deliver();
      });
      return { pid: started.pid, started_at: started.startedAt };
    } catch (err) {
      const jid =
        typeof (params as { jid?: unknown })?.jid === 'string' ? (params as { jid: string }).jid.slice(0, 64) : '?';
      this.log.warn(`job ${jid}: refused: ${errorMessage(err)}`);
      throw err;
    }
  }

  private keep(jid: string, d: Delivery): void {
    this.undelivered.set(jid, d);
    let total = 0;
    for (const x of this.undelivered.values()) total += x.bytes;
    for (const [old, x] of this.undelivered) {
      if (this.undelivered.size <= MAX_UNDELIVERED && total <= MAX_UNDELIVERED_BYTES) break;
      this.undelivered.delete(old);
      total -= x.bytes;
      this.log.warn(
        `job ${old}: result dropped undelivered: more than ${MAX_UNDELIVERED} results or ${MAX_UNDELIVERED_BYTES >> 20} MiB wait for the server`,
      );
    }
  }

  /** Each job message waits its turn: they never come faster than one per MIN_GAP_MS. */
  private async pace(): Promise<void> {
    const now = performance.now();
    const at = Math.max(now, this.nextSendAt);
    this.nextSendAt = at + MIN_GAP_MS;
    if (at > now) await sleep(at - now);
  }

  private async flushLive(): Promise<void> {
    const control = this.control;
    if (!control || this.flushing) return;
    const jobs: JobOutput['jobs'] = [];
    let budget = LIVE_MAX_CHARS;
    for (const [jid, r] of this.running) {
      if (budget <= 0) break;
      const stdout = r.live.stdout.slice(0, budget);
      budget -= stdout.length;
      const stderr = r.live.stderr.slice(0, Math.max(0, budget));
      budget -= stderr.length;
      if (!stdout && !stderr) continue;
      r.live.stdout = r.live.stdout.slice(stdout.length);
      r.live.stderr = r.live.stderr.slice(stderr.length);
      jobs.push({ jid, stdout, stderr });
    }
    if (!jobs.length) return;
    this.flushing = true;
    try {
      await this.pace();
      await control.request(METHOD.jobOutput, { jobs } satisfies JobOutput, REQUEST_TIMEOUT_MS);
    } catch {
      // Live output is a view: what is lost here is in the result.
    } finally {
      this.flushing = false;
    }
  }

  /** Sends kept results, oldest first, each as its parts then its end; a result leaves only once the server answered its end. */
  private async deliver(): Promise<void> {
    if (this.delivering) return;
    this.delivering = true;
    try {
      for (const [jid, d] of this.undelivered) {
        const control = this.control;
        if (!control) return;
        try {
          for (const part of d.parts) {
            await this.pace();
            await control.request(METHOD.jobPart, part, REQUEST_TIMEOUT_MS);
          }
          await this.pace();
          await control.request(METHOD.jobDone, d.done, REQUEST_TIMEOUT_MS);
          this.undelivered.delete(jid);
          this.log.debug(`job ${jid}: result delivered`);
        } catch (err) {
          if (!(err instanceof RemoteError)) {
            this.log.info(`job ${jid}: result kept for the next connection (${errorMessage(err)})`);
            return;
          }
          // The server refused it (an unknown job, say): sending it again would not change that.
          this.undelivered.delete(jid);
          this.log.warn(`job ${jid}: the server did not take the result: ${errorMessage(err)}`);
        }
      }
    } finally {
      this.delivering = false;
    }
  }
}
