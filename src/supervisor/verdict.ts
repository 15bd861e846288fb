// The rules by which rport-watchdog (and packaging/windows/rport-watchdog.ps1, which must stay identical;
// both are checked against test/watchdog-verdict-cases.json) decide whether a client hangs.

import { escapeControls } from '../log.js';

export type Status = 'healthy' | 'hung' | 'unknown';

export interface VerdictInput {
  /** state.json's text, or why there is none. */
  file: { text: string } | { missing: true } | { unreadable: string };
  nowSec: number;
  /** --threshold: a fixed age limit that overrides everything else. */
  thresholdSec?: number;
  /** From rport.conf: the heartbeat budget, for files without next_update_by. */
  budgetSec?: number;
  /** Added to next_update_by before a client counts as hung. */
  graceSec: number;
}

export interface Verdict {
  status: Status;
  reason: string;
  /** Seconds since last_update_ts, when known. */
  ageSec?: number;
  state?: string;
  pid?: number;
}

/**
 * Without rport.conf the heartbeat budget is unknown; a promise further than this after the last update
 * is not believed either (the default budget is 5m21s; a client with a longer max_retry_interval needs -c).
 */
export const MAX_PROMISE_SEC = 3600;

export const EXIT_CODE: Record<Status, number> = { healthy: 0, hung: 1, unknown: 3 };

export function judge(input: VerdictInput): Verdict {
  const f = input.file;
  if ('missing' in f)
    return {
      status: 'unknown',
      reason: 'state.json does not exist: is watchdog_integration on and has the client ever started?',
    };
  if ('unreadable' in f) return { status: 'unknown', reason: `state.json cannot be read: ${f.unreadable}` };
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(f.text);
  } catch {
    return { status: 'unknown', reason: 'state.json is not valid JSON' };
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    return { status: 'unknown', reason: 'state.json is not a JSON object' };
  const ts = doc.last_update_ts;
  if (typeof ts !== 'number' || !Number.isFinite(ts))
    return { status: 'unknown', reason: 'state.json has no numeric last_update_ts' };
  const age = input.nowSec - ts;
  const base = {
    ageSec: age,
    state: typeof doc.last_state === 'string' ? doc.last_state : undefined,
    pid: typeof doc.pid === 'number' ? doc.pid : undefined,
  };
  // The reason is printed by `check` for monitoring agents that read one line: the file's text stays on it.
  const last = escapeControls(
    `last update ${age}s ago (${base.state ?? 'unknown state'}${typeof doc.last_message === 'string' && doc.last_message ? `: ${doc.last_message}` : ''})`,
  );

  if (input.thresholdSec !== undefined) {
    return age > input.thresholdSec
      ? { ...base, status: 'hung', reason: `${last}, over the threshold of ${input.thresholdSec}s` }
      : { ...base, status: 'healthy', reason: `${last}, within the threshold of ${input.thresholdSec}s` };
  }
  const promised = doc.next_update_by_ts;
  if (typeof promised === 'number' && Number.isFinite(promised)) {
    // A healthy client never promises more than its heartbeat budget ahead: a later deadline (a clock
    // that was far ahead, a file written by something else) would keep a hung client "healthy" forever.
    const limit = input.budgetSec ?? MAX_PROMISE_SEC;
    const next = Math.min(promised, ts + limit);
    const capped =
      next < promised
        ? ` (its promise of ${promised - ts}s after the last update is beyond the ${limit}s ${input.budgetSec === undefined ? 'believed without rport.conf' : 'heartbeat budget'})`
        : '';
    const overdue = input.nowSec - next;
    return overdue > input.graceSec
      ? {
          ...base,
          status: 'hung',
          reason: `${last}; it promised to write again by ${overdue}s ago${capped} (grace ${input.graceSec}s)`,
        }
      : { ...base, status: 'healthy', reason: `${last}; next update due within ${-overdue}s${capped}` };
  }
  if (input.budgetSec !== undefined) {
    return age > input.budgetSec
      ? {
          ...base,
          status: 'hung',
          reason: `${last}, older than the ${input.budgetSec}s that keep_alive and max_retry_interval allow`,
        }
      : {
          ...base,
          status: 'healthy',
          reason: `${last}, within the ${input.budgetSec}s that keep_alive and max_retry_interval allow`,
        };
  }
  return {
    ...base,
    status: 'unknown',
    reason: `${last}, but the file has no next_update_by: pass -c rport.conf or --threshold`,
  };
}
