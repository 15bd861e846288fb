import { createHash, randomBytes } from 'node:crypto';
import { deadline } from '../timeout.js';

/** How long a token from POST /login is valid. */
export const TOKEN_TTL_MS = 24 * 3600_000;
/** The longest lifetime a login may ask for (RPort's token-lifetime bound: 90 days). */
export const MAX_TOKEN_LIFETIME_SEC = 90 * 86_400;
/** Live tokens per user and in all: a login past either cap evicts the oldest, so logins cannot fill memory. */
export const MAX_TOKENS_PER_USER = 20;
export const MAX_TOKENS = 100;

interface Live {
  user: string;
  expires: number;
  /** Told when the token ends early (logout, eviction) or expires: open event streams close. */
  watchers: Set<() => void>;
}

// Kept by their hash: a lookup's timing depends on the hash, which an attacker cannot steer toward a live token.
const hashOf = (token: string) => createHash('sha256').update(token).digest('base64url');

/** Bearer tokens from POST /login: random, kept in memory (a restart logs everyone out). */
export class Tokens {
  /** In order of issue: the first entry of a user is its oldest. */
  private readonly live = new Map<string, Live>();

  constructor(private readonly now: () => number = Date.now) {}

  issue(user: string, ttlMs = TOKEN_TTL_MS): { token: string; expires_at: string } {
    const now = this.now();
    for (const [h, v] of this.live) if (v.expires <= now) this.end(h);
    const mine = [...this.live].filter(([, v]) => v.user === user);
    for (const [h] of mine.slice(0, Math.max(0, mine.length - MAX_TOKENS_PER_USER + 1))) this.end(h);
    for (const [h] of [...this.live].slice(0, Math.max(0, this.live.size - MAX_TOKENS + 1))) this.end(h);
    const token = randomBytes(32).toString('base64url');
    const expires = now + ttlMs;
    this.live.set(hashOf(token), { user, expires, watchers: new Set() });
    return { token, expires_at: new Date(expires).toISOString() };
  }

  valid(token: string): boolean {
    const v = this.live.get(hashOf(token));
    return !!v && v.expires > this.now();
  }

  /** Logout: the token stops working at once. False when it was not live. */
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
    this.live.delete(hash);
    for (const w of v?.watchers ?? []) w();
  }
}
