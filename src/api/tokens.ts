import { createHash, randomBytes } from 'node:crypto';
import { deadline } from '../timeout.js';
import { ApiError } from './errors.js';

/** How long a token from POST /login is valid. */
export const TOKEN_TTL_MS = 24 * 3600_000;
/** The longest lifetime a token may have (RPort's bound, and the most [api] max_token_lifetime may say: 90 days). */
export const MAX_TOKEN_LIFETIME_HOURS = 2160;
/** Live tokens per user and in all: a login past either cap evicts the oldest, so logins cannot fill memory. */
export const MAX_TOKENS_PER_USER = 20;
export const MAX_TOKENS = 100;

interface Live {
  user: string;
  expires: number;
  /** Told when the token ends early (logout, eviction) or expires: open event streams close. */
  watchers: Set<() => void>;
  /** The hash of the token that minted this one (GET /login with a bearer token): it ends with it. */
  parent: string | undefined;
}

// Kept by their hash: a lookup's timing depends on the hash, which an attacker cannot steer toward a live token.
const hashOf = (token: string) => createHash('sha256').update(token).digest('base64url');

/** Bearer tokens from POST /login: random, kept in memory (a restart logs everyone out). */
export class Tokens {
  /** In order of issue: the first entry of a user is its oldest. */
  private readonly live = new Map<string, Live>();

  /** `maxLifetimeMs`: [api] max_token_lifetime, the cap of every token's lifetime. */
  constructor(
    private readonly now: () => number = Date.now,
    readonly maxLifetimeMs = MAX_TOKEN_LIFETIME_HOURS * 3600_000,
  ) {}

  /**
   * A new token for `user`, valid `ttlMs` (at most max_token_lifetime); minted with the token `from`, it
   * expires no later than that one and is revoked with it, so a token cannot renew itself.
   */
  issue(user: string, ttlMs = TOKEN_TTL_MS, from?: string): { token: string; expires_at: string } {
    const now = this.now();
    for (const [h, v] of this.live) if (v.expires <= now) this.end(h);
    // The token minted from and its own makers are not evicted to make room: the new one would go with them.
    const kin = new Set<string>();
    for (
      let h = from === undefined ? undefined : hashOf(from);
      h !== undefined && this.live.has(h);
      h = this.live.get(h)!.parent
    )
      kin.add(h);
    if (kin.size >= MAX_TOKENS_PER_USER)
      throw new ApiError(
        400,
        'bad_request',
        `the token presented ends a chain of ${kin.size} tokens, each minted from the one before, the most there may be: log in with the credentials instead`,
      );
    const evict = (hashes: string[], over: number) => {
      for (const h of hashes.filter((x) => !kin.has(x)).slice(0, Math.max(0, over))) this.end(h);
    };
    const mine = [...this.live].filter(([, v]) => v.user === user).map(([h]) => h);
    evict(mine, mine.length - MAX_TOKENS_PER_USER + 1);
    evict([...this.live.keys()], this.live.size - MAX_TOKENS + 1);
    const parent = kin.size ? hashOf(from!) : undefined;
    const token = randomBytes(32).toString('base64url');
    const expires = Math.min(
      now + Math.min(ttlMs, this.maxLifetimeMs),
      parent ? this.live.get(parent)!.expires : Infinity,
    );
    this.live.set(hashOf(token), { user, expires, watchers: new Set(), parent });
    return { token, expires_at: new Date(expires).toISOString() };
  }

  valid(token: string): boolean {
    const v = this.live.get(hashOf(token));
    return !!v && v.expires > this.now();
  }

  /** Logout: the token, and every token minted from it, stop working at once. False when it was not live. */
  revoke(token: string): boolean {
    const h = hashOf(token);
    if (!this.valid(token)) return false;
    this.end(h);
    return true;
  }

  /** Calls `fn` once when the token stops working, for whatever reason; returns the way to stop watching. */
  watch(token: string, fn: () => void): () => void {
    const v = this.live.get(hashOf(token));
    if (!v) {
      fn();
      return () => {};
    }
    // Tokens live up to 90 days, longer than one timer can wait: deadline() waits in steps.
    const expiry = deadline(v.expires - this.now(), 'token', fn, { unref: true });
    const w = () => {
      expiry.cancel();
      fn();
    };
    v.watchers.add(w);
    return () => {
      expiry.cancel();
      v.watchers.delete(w);
    };
  }

  private end(hash: string): void {
    const v = this.live.get(hash);
    if (!v) return;
    this.live.delete(hash);
    for (const w of v.watchers) w();
    for (const [h, child] of [...this.live]) if (child.parent === hash) this.end(h);
  }
}
