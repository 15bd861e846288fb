import { formatDuration } from '../shared/duration.js';

/** Where failure counts live: in memory, or in the server's store so bans survive a restart. Keys are opaque. */
export interface FailureRecords {
  get(key: string): FailureRecord | undefined;
  set(key: string, record: FailureRecord): void;
  clear(key: string): void;
}

export interface FailureRecord {
  count: number;
  /** 0 while not banned. */
  banned_until: number;
  last_failed_at: number;
}

export function memoryRecords(): FailureRecords {
  const m = new Map<string, FailureRecord>();
  return {
    get: (k) => m.get(k),
    set: (k, r) => void m.set(k, r),
    clear: (k) => void m.delete(k),
  };
}

/**
 * A source that fails this many times max_failed_login, summed over every account it tried, is banned as a
 * whole: one address spraying guesses over many ids. Guessing one id never gets that far, since the pair is
 * banned first and refused attempts are not counted.
 */
export const SOURCE_FACTOR = 4;

export type BanKind = 'account' | 'source';

/**
 * Failed logins counted per source address and account (client id or API user), so a guesser at one id
 * behind a NAT does not lock out the other clients behind it; a success clears only its own pair, never
 * another id's count or the source's. Counts older than ban_time are forgotten.
 */
export class LoginThrottle {
  constructor(
    readonly maxFailed: number,
    private readonly banMs: number,
    private readonly records: FailureRecords = memoryRecords(),
    private readonly now: () => number = Date.now,
  ) {}

  /** Milliseconds the whole source is still banned for: checked before any account is named. */
  sourceBannedFor(source: string): number {
    return this.left(sourceKey(source));
  }

  /** Milliseconds this source may not try this account (or any account); 0 when it may try. */
  bannedFor(source: string, account: string): number {
    return Math.max(this.left(sourceKey(source)), this.left(pairKey(source, account)));
  }

  /** Records a failure; says what it got banned, if anything. */
  failed(source: string, account: string): BanKind | undefined {
    if (this.maxFailed <= 0) return undefined;
    const pair = this.count(pairKey(source, account), this.maxFailed);
    const whole = this.count(sourceKey(source), this.maxFailed * SOURCE_FACTOR);
    return whole ? 'source' : pair ? 'account' : undefined;
  }

  succeeded(source: string, account: string): void {
    const key = pairKey(source, account);
    if (this.records.get(key)) this.records.clear(key);
  }

  private count(key: string, limit: number): boolean {
    const now = this.now();
    const old = this.records.get(key);
    const fresh = !old || now - old.last_failed_at > this.banMs;
    const count = (fresh ? 0 : old.count) + 1;
    const banned = count >= limit;
    this.records.set(key, { count, banned_until: banned ? now + this.banMs : 0, last_failed_at: now });
    return banned;
  }

  private left(key: string): number {
    const f = this.records.get(key);
    if (!f) return 0;
    const now = this.now();
    if (f.banned_until > now) return f.banned_until - now;
    if (f.banned_until !== 0 || now - f.last_failed_at > this.banMs) this.records.clear(key);
    return 0;
  }
}

/** How long a ban still lasts, in whole seconds, for the lines that tell the banned. */
export const formatBan = (ms: number) => formatDuration(Math.ceil(ms / 1000) * 1000);

// JSON arrays keep the two parts apart whatever characters an account name holds.
const pairKey = (source: string, account: string) => JSON.stringify([source, account]);
const sourceKey = (source: string) => JSON.stringify([source]);
