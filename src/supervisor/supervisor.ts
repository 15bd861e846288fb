import { formatDuration } from '../shared/duration.js';
import type { Logger } from '../log.js';
import { sleep } from '../timeout.js';
import { pidAlive, platformCommands, runCommand } from './shell.js';
import { loadMemory, saveMemory } from './memory.js';
import { readStateFile, type Target } from './options.js';
import { judge, type Verdict } from './verdict.js';

/** Hung verdicts in a row before a restart: one stale read (a clock step, a slow disk) is not enough. */
export const STRIKES_TO_RESTART = 2;
const HOUR_SEC = 3600;

export interface SupervisorOptions {
  target: Target;
  intervalMs: number;
  graceSec: number;
  thresholdSec: number | undefined;
  restartCmd: string;
  runningCmd: string;
  service: string;
  maxRestartsPerHour: number;
  /** Bound on the restart and running commands. */
  commandTimeoutMs: number;
  memoryFile: string;
  log: Logger;
}

/**
 * Checks the client, and after STRIKES_TO_RESTART hung verdicts in a row restarts it: never a service that
 * was stopped on purpose, at most max_restarts an hour, and with a growing pause after each restart.
 */
export class Supervisor {
  private readonly restartCmd: string;
  private readonly runningCmd: string | undefined;

  constructor(private readonly o: SupervisorOptions) {
    const platform = platformCommands(o.service);
    this.restartCmd = o.restartCmd || platform.restart;
    // With a custom restart command and no way to ask a service manager, "meant to run" means the
    // process that wrote state.json still exists (a frozen process does; a stopped one does not).
    this.runningCmd = o.runningCmd || (o.restartCmd ? undefined : platform.running);
  }

  async runForever(signal: AbortSignal): Promise<void> {
    this.o.log.info(
      `watching ${this.o.target.statePath} every ${formatDuration(this.o.intervalMs)}; restart with: ${this.restartCmd}`,
    );
    while (!signal.aborted) {
      await this.checkOnce();
      await sleep(this.o.intervalMs, signal);
    }
  }

  /** One check and whatever it calls for; returns the verdict. */
  async checkOnce(nowSec = Math.floor(Date.now() / 1000)): Promise<Verdict> {
    const { log, target } = this.o;
    const memory = loadMemory(this.o.memoryFile);
    const verdict: Verdict = target.disabled
      ? { status: 'unknown', reason: target.disabled }
      : judge({
          file: readStateFile(target.statePath),
          nowSec,
          thresholdSec: this.o.thresholdSec,
          budgetSec: target.budgetSec,
          graceSec: this.o.graceSec,
        });

    if (verdict.status !== 'hung') {
      if (verdict.status === 'healthy') log.info(`healthy: ${verdict.reason}`);
      else log.warn(`cannot tell: ${verdict.reason}; nothing to do`);
      memory.strikes = 0;
    } else {
      memory.strikes++;
      if (memory.strikes < STRIKES_TO_RESTART) {
        log.warn(
          `hung (strike ${memory.strikes} of ${STRIKES_TO_RESTART}): ${verdict.reason}; checking again before restarting`,
        );
      } else if (await this.restartAllowed(verdict, memory.restarts, nowSec)) {
        log.error(
          `hung (strike ${memory.strikes} of ${STRIKES_TO_RESTART}): ${verdict.reason}; restarting the client: ${this.restartCmd}`,
        );
        const r = await runCommand(
          this.restartCmd,
          { RPORT_PID: String(verdict.pid ?? ''), RPORT_STATE_FILE: target.statePath },
          this.o.commandTimeoutMs,
        );
        if (r.code === 0) log.info(`restart command succeeded${r.output ? `: ${r.output}` : ''}`);
        else
          log.error(
            `restart command ${r.timedOut ? `timed out after ${formatDuration(this.o.commandTimeoutMs)}` : `failed with exit code ${r.code}`}${r.output ? `: ${r.output}` : ''}`,
          );
        memory.restarts.push(nowSec);
        memory.strikes = 0;
      }
    }
    memory.restarts = memory.restarts.filter((t) => nowSec - t < HOUR_SEC);
    const err = saveMemory(this.o.memoryFile, memory);
    if (err)
      log.warn(`cannot save ${this.o.memoryFile} (${err}): strikes and restarts are not remembered between runs`);
    return verdict;
  }

  private async restartAllowed(verdict: Verdict, restarts: number[], nowSec: number): Promise<boolean> {
    const { log } = this.o;
    const recent = restarts.filter((t) => nowSec - t < HOUR_SEC);
    if (recent.length >= this.o.maxRestartsPerHour) {
      const until = Math.min(...recent) + HOUR_SEC;
      log.error(
        `hung: ${verdict.reason}; NOT restarting: ${recent.length} restarts in the last hour reached --max-restarts ${this.o.maxRestartsPerHour} (next allowed in ${formatDuration((until - nowSec) * 1000)}); look at the client's log`,
      );
      return false;
    }
    // Backoff: after the k-th restart in an hour, wait 2^k check intervals before the next one.
    const last = Math.max(0, ...recent);
    const pauseSec = Math.ceil((this.o.intervalMs / 1000) * 2 ** recent.length);
    if (recent.length > 0 && nowSec - last < pauseSec) {
      log.warn(
        `hung: ${verdict.reason}; holding off: the last restart was ${nowSec - last}s ago, the pause after ${recent.length} restart(s) is ${pauseSec}s`,
      );
      return false;
    }
    if (this.runningCmd) {
      const r = await runCommand(this.runningCmd, {}, this.o.commandTimeoutMs);
      if (r.code !== 0) {
        log.warn(
          `hung: ${verdict.reason}; but the service is not meant to run (${this.runningCmd} exited ${r.code ?? 'on timeout'}): stopped on purpose, not restarting`,
        );
        return false;
      }
    } else if (verdict.pid !== undefined && !pidAlive(verdict.pid)) {
      log.warn(
        `hung: ${verdict.reason}; but process ${verdict.pid} is gone: stopped on purpose or crashed, not restarting (the service manager restarts crashed services)`,
      );
      return false;
    }
    return true;
  }
}
