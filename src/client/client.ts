import { arch, platform } from 'node:os';
import type { ClientConfig } from '../config/client-config.js';
import { formatDuration, formatNanos } from '../shared/duration.js';
import type { ServerUrl } from '../config/server-url.js';
import { errorMessage, type Logger } from '../log.js';
import { sleep } from '../timeout.js';
import { RemoteError } from '../transport/control-channel.js';
import { METHOD, type ConnectReply, type ConnectRequest, type WatchdogFacts } from '../transport/protocol.js';
import { VERSION } from '../version.js';
import { TIMER_SLACK_MS } from '../watchdog/budget.js';
import type { ClientObserver } from '../watchdog/observer.js';
import { StepClock } from '../watchdog/step-clock.js';
import { Backoff } from './backoff.js';
import { ClientJobs } from './jobs/client-jobs.js';
import { dial, type Link } from './dial.js';
import { TunnelTargets } from './tunnel-targets.js';

/** Jitter shortens a keep-alive interval by up to this share, and by at most MAX_KEEPALIVE_JITTER_MS. */
const KEEPALIVE_JITTER = 0.05;
const MAX_KEEPALIVE_JITTER_MS = 5000;

const PROCESS_START = Date.now() - Math.round(process.uptime() * 1000);

const since = (t0: bigint) => Number(process.hrtime.bigint() - t0);

/** The client's first request on the control channel: who it is, and what it brings. */
export function connectionRequest(
  cfg: Pick<ClientConfig, 'id' | 'name' | 'tags' | 'hostname' | 'remotes'>,
  watchdog: WatchdogFacts | undefined,
): ConnectRequest {
  return {
    id: cfg.id,
    name: cfg.name,
    tags: cfg.tags,
    hostname: cfg.hostname,
    os: platform(),
    arch: arch(),
    version: VERSION,
    pid: process.pid,
    processStart: PROCESS_START,
    remotes: cfg.remotes,
    watchdog,
  };
}

export class RportClient {
  private readonly backoff: Backoff;
  private readonly tunnels: TunnelTargets;
  private readonly jobs: ClientJobs;
  private stopped = false;
  private wake = new AbortController();
  private link: Link | undefined;
  private switchTo: { link: Link; index: number; latencyNs: number } | undefined;

  constructor(
    private readonly cfg: ClientConfig,
    private readonly log: Logger,
    private readonly observer: ClientObserver,
    /** The loop's current step and deadline, shared with the watchdog heartbeat. */
    readonly clock: StepClock = new StepClock(),
  ) {
    this.backoff = new Backoff(cfg.maxRetryIntervalMs);
    this.tunnels = new TunnelTargets(cfg.tunnelAllowed, log.child('tunnels'));
    this.jobs = new ClientJobs(cfg.commands, log.child('commands'));
  }

  /** Runs until stopped (resolves 0) or until max_retry_count failed attempts (resolves 1). */
  async run(): Promise<number> {
    let failures = 0;
    let index = 0;
    while (!this.stopped) {
      const server = this.cfg.servers[index]!;
      let latencyNs: number;
      try {
        if (this.switchTo) {
          ({ link: this.link, index, latencyNs } = this.switchTo);
          this.switchTo = undefined;
        } else {
          this.log.debug(`attempt ${failures + 1}: connecting to ${server.href}`);
          const t0 = process.hrtime.bigint();
          this.link = await this.connect(server, this.clock);
          latencyNs = since(t0);
        }
      } catch (err) {
        if (this.stopped) break;
        failures++;
        const why = errorMessage(err);
        // RPort's meaning: max_retry_count counts retries after the first attempt, so 0 makes one attempt.
        if (this.cfg.maxRetryCount >= 0 && failures > this.cfg.maxRetryCount) {
          this.log.error(
            `giving up after ${failures} failed attempt${failures > 1 ? 's' : ''} (max_retry_count = ${this.cfg.maxRetryCount}); the last one: ${why}`,
          );
          return 1;
        }
        this.log.warn(`attempt ${failures} to ${server.hostPort} failed: ${why}`);
        index = (index + 1) % this.cfg.servers.length;
        await this.waitBeforeRetry();
        continue;
      }

      failures = 0;
      this.backoff.reset();
      const current = this.cfg.servers[index]!;
      this.log.info(`connected to ${current.hostPort} within ${formatNanos(latencyNs)}`);
      this.observer.connected(current.hostPort, latencyNs);
      const reason = await this.serve(this.link!, current, index);
      this.link!.close();
      this.link = undefined;
      if (this.stopped) break;
      if (this.switchTo) {
        this.log.info(`switching back to the main server ${this.cfg.servers[0]!.hostPort}`);
        continue;
      }
      this.log.warn(`connection to ${current.hostPort} lost: ${reason}`);
      index = 0;
      await this.waitBeforeRetry();
    }
    return 0;
  }

  /** Ends the loop: closes the connection and cuts any wait short. */
  stop(): void {
    this.stopped = true;
    this.jobs.stop();
    this.wake.abort();
    this.link?.close();
    this.switchTo?.link.close();
  }

  /** SIGHUP: skip the current wait and try again at once. */
  retryNow(): void {
    this.wake.abort();
  }

  private async sleep(ms: number): Promise<void> {
    await sleep(ms, this.wake.signal);
    if (this.wake.signal.aborted) this.wake = new AbortController();
  }

  private async waitBeforeRetry(): Promise<void> {
    const wait = this.backoff.next();
    this.log.info(`Retrying in ${formatDuration(wait)}...`);
    this.observer.retrying(wait);
    this.clock.begin('waiting before the next attempt', wait + TIMER_SLACK_MS);
    await this.sleep(wait);
  }

  /** Dial, then the connection request; the whole attempt is bounded by connect_timeout. */
  private async connect(server: ServerUrl, clock: StepClock): Promise<Link> {
    const end = performance.now() + this.cfg.connectTimeoutMs;
    const link = await dial(
      {
        server,
        proxy: this.cfg.proxy,
        extraCa: this.cfg.tlsCaPem,
        headers: this.cfg.headers,
        authId: this.cfg.authId,
        password: this.cfg.password,
        fingerprint: this.cfg.fingerprint,
        timeoutMs: this.cfg.connectTimeoutMs,
      },
      clock,
      (m) => this.log.debug(m),
    );
    const request = connectionRequest(this.cfg, this.observer.facts());
    this.tunnels.attach(link.ssh, link.control);
    this.jobs.attach(link.control);
    try {
      const left = Math.max(1, end - performance.now());
      const reply = await clock.run('request', 'connection request', left, () =>
        link.control.request<ConnectReply>(METHOD.connect, request, left),
      );
      this.log.debug(
        `server accepted the connection request (session ${reply.sessionId}, host key ${link.fingerprint}${link.rport ? ', a stock RPort server' : ''})`,
      );
      return link;
    } catch (err) {
      link.close();
      if (err instanceof RemoteError) throw new Error(`server refused the connection: ${err.message}`, { cause: err });
      throw err;
    }
  }

  /** Keeps one connection alive with pings until it is lost, stopped, or replaced by the main server. */
  private async serve(link: Link, server: ServerUrl, index: number): Promise<string> {
    link.control.handle(METHOD.ping, () => ({ now: Date.now() }));
    this.jobs.online(link.control);
    const lost = new Promise<string>((resolve) => {
      link.control.once('close', (e: Error) => resolve(e.message));
      link.ssh.once('close', () => resolve('the server closed the connection'));
      link.ssh.once('error', (e: Error) => resolve(errorMessage(e)));
    });
    const switchback = index > 0 && this.cfg.switchbackIntervalMs > 0 ? this.watchMainServer(link) : undefined;
    try {
      const { keepAliveMs, keepAliveTimeoutMs } = this.cfg;
      if (keepAliveMs <= 0) {
        this.clock.begin('connected with keep_alive off', Infinity);
        return await lost;
      }
      let lastRttMs: number | undefined;
      while (!this.stopped) {
        const interval =
          keepAliveMs - Math.min(keepAliveMs * KEEPALIVE_JITTER, MAX_KEEPALIVE_JITTER_MS) * Math.random();
        this.clock.begin('waiting for the next ping', interval + TIMER_SLACK_MS);
        const early = await Promise.race([this.sleep(interval).then(() => undefined), lost]);
        if (early !== undefined || this.stopped) return early ?? 'stopped';
        const t0 = process.hrtime.bigint();
        try {
          await this.clock.run('ping', `ping to ${server.hostPort}`, keepAliveTimeoutMs, () =>
            link.control.request(
              METHOD.ping,
              { last_rtt_ms: lastRttMs, watchdog: this.observer.facts() },
              keepAliveTimeoutMs,
            ),
          );
        } catch (err) {
          return `ping failed: ${errorMessage(err)}`;
        }
        const rtt = since(t0);
        lastRttMs = rtt / 1e6;
        this.log.debug(`ping to ${server.hostPort} succeeded within ${formatNanos(rtt)}`);
        this.observer.pinged(server.hostPort, rtt);
      }
      return 'stopped';
    } finally {
      if (switchback) clearInterval(switchback);
    }
  }

  /** While on a fallback server, tries the main one every server_switchback_interval. */
  private watchMainServer(current: Link): NodeJS.Timeout {
    let probing = false;
    return setInterval(async () => {
      if (probing || this.stopped) return;
      probing = true;
      const main = this.cfg.servers[0]!;
      const t0 = process.hrtime.bigint();
      try {
        // A clock of its own: the probe runs beside the keep-alive loop, whose steps the watchdog tracks.
        const link = await this.connect(main, new StepClock());
        this.switchTo = { link, index: 0, latencyNs: since(t0) };
        current.close();
      } catch (err) {
        this.log.debug(`main server ${main.hostPort} still unavailable: ${errorMessage(err)}`);
      } finally {
        probing = false;
      }
    }, this.cfg.switchbackIntervalMs);
  }
}
