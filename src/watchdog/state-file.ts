import { closeSync, fchmodSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { errorMessage, type Logger } from '../log.js';
import { goTimestamp } from './go-time.js';

export type WatchdogState = 'initialized' | 'connected' | 'reconnecting';

/** state.json: RPort's four fields first, then ours, which readers that know only the four can ignore. */
export interface StateRecord {
  last_update: string;
  last_update_ts: number;
  last_state: WatchdogState;
  last_message: string;
  pid: number;
  next_update_by: string;
  next_update_by_ts: number;
}

export const STATE_FILE_NAME = 'state.json';

export function stateRecord(state: WatchdogState, message: string, atMicros: number, nextByMicros: number): StateRecord {
  return {
    last_update: goTimestamp(atMicros),
    last_update_ts: Math.floor(atMicros / 1e6),
    last_state: state,
    last_message: message,
    pid: process.pid,
    next_update_by: goTimestamp(nextByMicros),
    next_update_by_ts: Math.ceil(nextByMicros / 1e6),
  };
}

/**
 * Writes state.json atomically: a temporary file in the same folder, then rename, so a reader sees the
 * old file or the new one, never an empty or partial one. A failing write is logged once per kind of
 * failure and never stops the client.
 */
export class StateFile {
  readonly path: string;
  private readonly tmp: string;
  private readonly reported = new Set<string>();

  constructor(dir: string, private readonly log: Logger) {
    this.path = join(dir, STATE_FILE_NAME);
    this.tmp = join(dir, `.${STATE_FILE_NAME}.${process.pid}.tmp`);
    try {
      mkdirSync(dir, { recursive: true });
    } catch {
      // reported by the first write
    }
  }

  write(record: StateRecord): boolean {
    let fd: number | undefined;
    try {
      fd = openSync(this.tmp, 'w', 0o644);
      fchmodSync(fd, 0o644); // the umask must not make it unreadable for a supervisor running as another user
      writeSync(fd, JSON.stringify(record, null, 2) + '\n');
      closeSync(fd);
      fd = undefined;
      renameSync(this.tmp, this.path);
      if (this.reported.size > 0) {
        this.log.info(`${this.path} is being written again`);
        this.reported.clear();
      }
      return true;
    } catch (err) {
      if (fd !== undefined) closeSync(fd);
      try {
        unlinkSync(this.tmp);
      } catch {
        // nothing to clean up
      }
      const kind = (err as NodeJS.ErrnoException).code ?? errorMessage(err);
      if (!this.reported.has(kind)) {
        this.reported.add(kind);
        this.log.error(`cannot write ${this.path} (${kind}): a supervisor reading it will think the client hangs; the client keeps running. Make [client] data_dir writable for the rport user`);
      }
      return false;
    }
  }
}
