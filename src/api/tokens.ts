import { randomBytes } from 'node:crypto';

const TOKEN_TTL_MS = 24 * 3600_000;

/** Bearer tokens from POST /login: random, kept in memory, valid for a day (a restart logs everyone out). */
export class Tokens {
  private readonly byToken = new Map<string, { user: string; expires: number }>();

  issue(user: string): { token: string; expires_at: string } {
    const now = Date.now();
    for (const [t, v] of this.byToken) if (v.expires < now) this.byToken.delete(t);
    const token = randomBytes(32).toString('base64url');
    const expires = now + TOKEN_TTL_MS;
    this.byToken.set(token, { user, expires });
    return { token, expires_at: new Date(expires).toISOString() };
  }

  valid(token: string): boolean {
    const v = this.byToken.get(token);
    return !!v && v.expires > Date.now();
  }
}
