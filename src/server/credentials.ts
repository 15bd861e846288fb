import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import bcrypt from 'bcryptjs';

const BCRYPT = /^\$2[abxy]\$\d\d\$/;

/** Compares without leaking the length of the common prefix through timing. */
export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Credentials added through the API, kept (bcrypt-hashed) in the server's store. */
export interface CredentialStore {
  credential(id: string): string | undefined;
}

/**
 * Client credentials: id -> password, plain or a bcrypt hash. From [server] auth and auth_file (fixed),
 * then those added through the API (in the store).
 */
export class Credentials {
  private store: CredentialStore | undefined;

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
        throw new Error(`${authFile}: ${e.code ? `cannot read: ${e.code}` : `not valid JSON: ${e.message}`} (expected {"client-id": "password", ...})`);
      }
      if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new Error(`${authFile}: expected a JSON object of client id to password`);
      for (const [id, pw] of Object.entries(doc)) {
        if (typeof pw !== 'string' || !pw) throw new Error(`${authFile}: the password of "${id}" must be a non-empty string`);
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

  async verify(id: string, password: string): Promise<boolean> {
    const stored = this.byId.get(id) ?? this.store?.credential(id);
    if (stored === undefined) return false;
    if (BCRYPT.test(stored)) return bcrypt.compare(password, stored.replace(/^\$2[xy]\$/, '$2b$'));
    return safeEqual(stored, password);
  }
}

export function hashPassword(password: string): Promise<string> {
  return bcrypt.hash(password, 10);
}
