import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { folderWritableByOthers, writeFileAtomic, type UnsafeFolder } from '../files.js';
import { errorMessage, type Logger } from '../log.js';
import { goTimestamp } from '../shared/go-time.js';

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

export function stateRecord(
  state: WatchdogState,
  message: string,
  atMicros: number,
  nextByMicros: number,
): StateRecord {
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
 * Writes state.json atomically (see writeFileAtomic), mode 0644 so a supervisor running as another user
 * can read it, and never into a folder that another user could write to: they could swap the file a
 * root supervisor acts on. A failing write is logged once per kind of failure and never stops the client.
 */
export class StateFile {
  readonly path: string;
  private readonly reported = new Set<string>();

  constructor(
    dir: string,
    private readonly log: Logger,
  ) {
    this.path = join(dir, STATE_FILE_NAME);
    try {
      mkdirSync(dir, { recursive: true });
    } catch {
      // reported by the first write
    }
  }

  write(record: StateRecord): boolean {
    let unsafe: UnsafeFolder | undefined;
    try {
      unsafe = folderWritableByOthers(dirname(this.path));
      if (!unsafe) writeFileAtomic(this.path, JSON.stringify(record, null, 2) + '\n', { mode: 0o644 });
    } catch (err) {
      this.report(
        (err as NodeJS.ErrnoException).code ?? errorMessage(err),
        'Make [client] data_dir writable for the rport user',
      );
      return false;
    }
    if (unsafe) {
      this.report(unsafe.kind, `Not writing into it: ${unsafe.text}`);
      return false;
    }
    if (this.reported.size > 0) {
      this.log.info(`${this.path} is being written again`);
      this.reported.clear();
    }
    return true;
  }

  private report(kind: string, fix: string): void {
    if (this.reported.has(kind)) return;
    this.reported.add(kind);
    this.log.error(
      `cannot write ${this.path} (${kind}): a supervisor reading it will think the client hangs; the client keeps running. ${fix}`,
    );
  }
}
