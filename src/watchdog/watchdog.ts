import type { ClientConfig } from '../config/client-config.js';
import { formatDuration, formatNanos } from '../shared/duration.js';
import type { Logger } from '../log.js';
import type { WatchdogFacts } from '../transport/protocol.js';
import { describeBudget, heartbeatBudget, suggestedWatchdogSec } from './budget.js';
import { nowMicros } from '../shared/go-time.js';
import type { ClientObserver } from './observer.js';
import type { SdNotify } from './sd-notify.js';
import { stateRecord, type StateFile, type WatchdogState } from './state-file.js';
import type { StepClock } from './step-clock.js';

/** How far past its deadline a step may run before the heartbeats stop (timers fire a little late). */
const DEADLINE_GRACE_MS = 500;

export interface WatchdogParts {
  /** state.json, when [connection] watchdog_integration is on. */
  stateFile: StateFile | undefined;
  notify: SdNotify | undefined;
  /** systemd's WatchdogSec for this process, in microseconds. */
  watchdogUsec: number | undefined;
}

/**
 * Turns the connection loop's events into state.json rewrites and sd_notify messages, and, between
 * events, heartbeats that flow only while the loop's current step is within its deadline: a step that
 * never ends stops them, so a supervisor restarts the client long before the next keep-alive would.
 */
export class Watchdog implements ClientObserver {
  private state: WatchdogState = 'initialized';
  private message = '';
  /** When the next event is due at the latest (ms, wall clock), for next_update_by. */
  private eventDueMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private withheld = false;
  private readonly heartbeatMs: number;

  constructor(
    private readonly cfg: ClientConfig,
    private readonly parts: WatchdogParts,
    private readonly clock: StepClock,
    private readonly log: Logger,
  ) {
    const systemdMs = parts.notify && parts.watchdogUsec ? parts.watchdogUsec / 2000 : Infinity;
    const fileMs = parts.stateFile && cfg.watchdogIntervalMs > 0 ? cfg.watchdogIntervalMs : Infinity;
    this.heartbeatMs = Math.min(systemdMs, fileMs);
  }

  /** Writes the initialized state, tells systemd READY=1 (without waiting for a connection), starts the heartbeat. */
  start(): void {
    const budget = heartbeatBudget(this.cfg);
    if (this.parts.stateFile)
      this.log.info(
        `watchdog integration on: writing ${this.parts.stateFile.path}; longest gap between updates ${describeBudget(budget)}`,
      );
    const usec = this.parts.watchdogUsec;
    if (this.parts.notify && usec) {
      const wdMs = usec / 1000;
      this.log.info(
        `systemd watchdog armed (WatchdogSec=${formatDuration(wdMs)}): WATCHDOG=1 on every event and every ${formatDuration(wdMs / 2)} while the connection loop is within its step deadline`,
      );
      if (wdMs < budget.maxMs) {
        this.log.warn(
          `systemd WatchdogSec=${formatDuration(wdMs)} is below the heartbeat budget ${formatDuration(budget.maxMs)}: this client covers the gap with in-step heartbeats, but a client relying on events alone would be killed while healthy; WatchdogSec=${suggestedWatchdogSec(budget)} covers the budget`,
        );
      }
    }
    this.parts.notify?.send({
      READY: '1',
      STATUS: `initialized: connecting to ${this.cfg.servers[0]!.hostPort}`,
      MAINPID: String(process.pid),
    });
    this.update('initialized', '', this.cfg.connectTimeoutMs);
    if (Number.isFinite(this.heartbeatMs)) {
      this.timer = setInterval(() => this.heartbeat(), this.heartbeatMs);
    }
  }

  stop(): void {
    clearInterval(this.timer);
    this.parts.notify?.send({ STOPPING: '1', STATUS: 'stopping' });
  }

  /** For the server's view of this client (sent with the connection request and each ping). */
  facts(): WatchdogFacts {
    return {
      integration: !!this.parts.stateFile,
      systemd_watchdog_sec: this.parts.notify && this.parts.watchdogUsec ? this.parts.watchdogUsec / 1e6 : null,
      heartbeat_budget_sec: Math.ceil(heartbeatBudget(this.cfg).maxMs / 1000),
      last_state: this.state,
    };
  }

  connected(server: string, latencyNs: number): void {
    this.update(
      'connected',
      `connected to ${server} within ${formatNanos(latencyNs)}`,
      this.cfg.keepAliveMs + this.cfg.keepAliveTimeoutMs,
    );
  }

  pinged(server: string, latencyNs: number): void {
    this.update(
      'connected',
      `ping to ${server} succeeded within ${formatNanos(latencyNs)}`,
      this.cfg.keepAliveMs + this.cfg.keepAliveTimeoutMs,
    );
  }

  retrying(waitMs: number): void {
    this.update('reconnecting', `Retrying in ${formatDuration(waitMs)}...`, waitMs + this.cfg.connectTimeoutMs);
  }

  /** An event: new state and message, state.json rewritten, WATCHDOG=1 with the message as STATUS. */
  private update(state: WatchdogState, message: string, nextEventWithinMs: number): void {
    this.state = state;
    this.message = message;
    this.eventDueMs = Date.now() + nextEventWithinMs + 1000;
    this.write();
    this.parts.notify?.send({ WATCHDOG: '1', STATUS: message || state });
  }

  /** Between events: the same state and message with a new time, but only while the loop makes progress. */
  private heartbeat(): void {
    if (!this.clock.withinDeadline(DEADLINE_GRACE_MS)) {
      if (!this.withheld)
        this.log.error(
          `connection step "${this.clock.step}" is past its deadline: withholding watchdog heartbeats so the supervisor restarts the client`,
        );
      this.withheld = true;
      return;
    }
    this.withheld = false;
    this.write();
    if (this.parts.watchdogUsec) this.parts.notify?.send({ WATCHDOG: '1' });
  }

  private write(): void {
    const file = this.parts.stateFile;
    if (!file) return;
    const now = nowMicros();
    const nextHeartbeat = Number.isFinite(this.heartbeatMs) ? now / 1000 + this.heartbeatMs + 1000 : Infinity;
    file.write(stateRecord(this.state, this.message, now, Math.min(this.eventDueMs, nextHeartbeat) * 1000));
  }
}
