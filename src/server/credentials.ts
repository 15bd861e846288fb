import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import bcrypt from 'bcryptjs';
import { BcryptPool } from './bcrypt-pool.js';

const BCRYPT = /^\$2[abxy]\$\d\d\$/;

/**
 * A failed check is answered no sooner than this after it started, whether the id is unknown (no work), has
 * a plain password (microseconds) or a bcrypt hash (about 70 ms at cost 10): the answer's timing tells an
 * attacker nothing about which ids exist, and unknown ids cost no CPU at all.
 */
export const FAILED_CHECK_MIN_MS = 250;
/** Successful bcrypt checks remembered, so a reconnect storm of a whole fleet does not redo them. */
const VERIFIED_CACHE_SIZE = 10_000;

/** Per process: digests of secrets are worth nothing outside it. */
const macKey = randomBytes(32);
const mac = (s: string) => createHmac('sha256', macKey).update(s).digest();

/** Compares in constant time, leaking neither the common prefix nor the length. */
export function safeEqual(a: string, b: string): boolean {
  return timingSafeEqual(mac(a), mac(b));
}

/** A check's outcome: 'unknown' when no credential has the id (no work was done). */
export type CheckResult = 'ok' | 'wrong' | 'unknown';

/** Credentials added through the API, kept (bcrypt-hashed) in the server's store. */
export interface CredentialStore {
  credential(id: string): Promise<string | undefined>;
}

/**
 * Client credentials: id -> password, plain or a bcrypt hash. From [server] auth and auth_file (fixed),
 * then those added through the API (in the store).
 */
export class Credentials {
  private store: CredentialStore | undefined;
  private readonly pool = new BcryptPool();
  /** Digests of (id, stored hash, password) that bcrypt accepted; insertion order gives the eviction order. */
  private readonly verified = new Set<string>();

  private constructor(private readonly byId: Map<string, string>) {}

  useStore(store: CredentialStore): void {
    this.store = store;
  }

  /** Whether the id comes from the config files (those cannot be changed through the API). */
  fromConfig(id: string): boolean {
    return this.byId.has(id);
  }

  /** Throws an Error whose message names the file and what is wrong with it. */
  static load(auth: string, authFile: string): Credentials {
    const byId = new Map<string, string>();
    if (authFile) {
      let doc: unknown;
      try {
        doc = JSON.parse(readFileSync(authFile, 'utf8'));
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw new Error(
          `${authFile}: ${e.code ? `cannot read: ${e.code}` : `not valid JSON: ${e.message}`} (expected {"client-id": "password", ...})`,
          { cause: err },
        );
      }
      if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
        throw new Error(`${authFile}: expected a JSON object of client id to password`);
      for (const [id, pw] of Object.entries(doc)) {
        if (typeof pw !== 'string' || !pw)
          throw new Error(`${authFile}: the password of "${id}" must be a non-empty string`);
        byId.set(id, pw);
      }
    }
    if (auth) {
      const i = auth.indexOf(':');
      byId.set(auth.slice(0, i), auth.slice(i + 1));
    }
    return new Credentials(byId);
  }

  get size(): number {
    return this.byId.size;
  }

  /**
   * Whether the password is right for the id, and whether the id exists at all; a failure resolves after
   * FAILED_CHECK_MIN_MS at the earliest, whichever it is. Rejects with PoolBusyError when too many bcrypt
   * checks are waiting (the caller refuses without counting).
   */
  async verify(id: string, password: string): Promise<CheckResult> {
    const started = performance.now();
    const result = await this.check(id, password);
    if (result !== 'ok') await sleep(Math.max(0, FAILED_CHECK_MIN_MS - (performance.now() - started)));
    return result;
  }

  /** Whether a credential has this id (its auth id): from the config files or added through the API. */
  async exists(id: string): Promise<boolean> {
    return (this.byId.get(id) ?? (await this.store?.credential(id))) !== undefined;
  }

  private async check(id: string, password: string): Promise<CheckResult> {
    const stored = this.byId.get(id) ?? (await this.store?.credential(id));
    if (stored === undefined) return 'unknown';
    if (!BCRYPT.test(stored)) return safeEqual(stored, password) ? 'ok' : 'wrong';
    const key = mac(JSON.stringify([id, stored, password])).toString('base64');
    if (this.verified.has(key)) return 'ok';
    const ok = await this.pool.compare(password, stored.replace(/^\$2[xy]\$/, '$2b$'));
    if (!ok) return 'wrong';
    if (this.verified.size >= VERIFIED_CACHE_SIZE) this.verified.delete(this.verified.values().next().value!);
    this.verified.add(key);
    return 'ok';
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

export function hashPassword(password: string): Promise<string> {
  return bcrypt.hash(password, 10);
}
