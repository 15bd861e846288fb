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
 * A source that fails this many times max_failed_login at ids that do not exist is banned from trying
 * unknown ids: one address spraying guesses over many ids. Known ids are never blocked by it, only by
 * their own pair's count, so a sprayer behind a NAT cannot lock the real clients out.
 */
export const SOURCE_FACTOR = 4;

export type BanKind = 'account' | 'source';

/** One login attempt, counted before its check starts. */
export interface Attempt {
  /** Over 0: refused unchecked, the pair is banned for this many more milliseconds (not counted). */
  bannedMs: number;
  /** This attempt took the pair's last try: if it fails, the pair is banned. */
  last: boolean;
  /** The pair it is counted under while its check runs; none when refused. */
  readonly key?: string;
}

/**
 * Failed logins counted per source address and account (client id or API user), so a guesser at one id
 * behind a NAT does not lock out the other clients behind it; a success clears only its own pair, never
 * another id's count or the source's. Each realm (client logins, API logins) counts on its own: one never
 * bans the other. An attempt is counted when it starts, so parallel attempts cannot outrun the count:
 * at most max_failed_login checks per pair and ban_time. Counts older than ban_time are forgotten.
 */
export class LoginThrottle {
  readonly maxFailed: number;
  private readonly records: FailureRecords;
  private readonly realm: string;
  private readonly now: () => number;
  /** Checks under way per pair: counted against its tries, never written to the store. */
  private readonly running = new Map<string, number>();

  constructor(
    maxFailed: number,
    private readonly banMs: number,
    o: { records?: FailureRecords; realm?: 'clients' | 'api'; now?: () => number } = {},
  ) {
    this.maxFailed = maxFailed;
    this.records = o.records ?? memoryRecords();
    this.realm = o.realm ?? 'clients';
    this.now = o.now ?? Date.now;
  }

  /** Milliseconds this source may not try unknown accounts (after spraying over them). */
  sourceBannedFor(source: string): number {
    return this.left(this.sourceKey(source));
  }

  /** Milliseconds this source may not try this account; 0 when it may try. */
  bannedFor(source: string, account: string): number {
    return this.left(this.pairKey(source, account));
  }

  /**
   * Before a check: refused while the pair is banned, or while the checks already under way could use up its
   * tries (as if banned: those checks decide). Otherwise counted as under way, in memory only: a success then
   * costs no write to the store, and only a failure is recorded. Each begin ends in succeeded, failed or cancel.
   */
  begin(source: string, account: string): Attempt {
    const bannedMs = this.bannedFor(source, account);
    if (bannedMs > 0 || this.maxFailed <= 0) return { bannedMs, last: false };
    const key = this.pairKey(source, account);
    const running = (this.running.get(key) ?? 0) + 1;
    const tries = this.countOf(key) + running;
    if (tries > this.maxFailed) return { bannedMs: this.banMs, last: false };
    this.running.set(key, running);
    return { bannedMs: 0, last: tries >= this.maxFailed, key };
  }

  /** The check could not run (too busy), or was refused for another reason: not held against the pair. */
  cancel(source: string, account: string): void {
    this.finish(this.pairKey(source, account));
  }

  /** The check failed; an unknown account counts against the whole source too. */
  failed(source: string, attempt: Attempt, known: boolean): BanKind | undefined {
    if (this.maxFailed <= 0 || attempt.key === undefined) return undefined;
    this.finish(attempt.key);
    const banned = this.count(attempt.key, this.maxFailed);
    if (!known && this.count(this.sourceKey(source), this.maxFailed * SOURCE_FACTOR)) return 'source';
    return banned ? 'account' : undefined;
  }

  succeeded(source: string, account: string): void {
    const key = this.pairKey(source, account);
    this.finish(key);
    if (this.records.get(key)) this.records.clear(key);
  }

  private finish(key: string): void {
    const left = (this.running.get(key) ?? 0) - 1;
    if (left > 0) this.running.set(key, left);
    else this.running.delete(key);
  }

  /** Failures recorded for a pair that still count (within ban_time of the last one, or banned). */
  private countOf(key: string): number {
    const r = this.records.get(key);
    const now = this.now();
    return !r || (r.banned_until <= now && now - r.last_failed_at > this.banMs) ? 0 : r.count;
  }

  /** Adds one to a count; true when that reached the limit (and banned). */
  private count(key: string, limit: number): boolean {
    const now = this.now();
    const count = this.countOf(key) + 1;
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

  // JSON arrays keep the parts apart whatever characters an account name holds.
  private pairKey(source: string, account: string): string {
    return JSON.stringify(this.realm === 'clients' ? [source, account] : [this.realm, source, account]);
  }

  private sourceKey(source: string): string {
    return JSON.stringify(this.realm === 'clients' ? [source] : [this.realm, source]);
  }
}

/** How long a ban still lasts, in whole seconds, for the lines that tell the banned. */
export const formatBan = (ms: number) => formatDuration(Math.ceil(ms / 1000) * 1000);
