import type { FastifyReply, FastifyRequest } from 'fastify';
import { plainAddress } from '../shared/host-port.js';
import { LogLimiter, type Logger } from '../log.js';
import { safeEqual } from '../server/credentials.js';
import { formatBan, SOURCE_FACTOR, type LoginThrottle } from '../server/login-throttle.js';
import { fail } from './errors.js';
import type { Tokens } from './tokens.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Answered without credentials (the dashboard's files, POST /login). Every other route, and any unknown path, needs them. */
    public?: boolean;
    /** Takes the bearer token as ?token= too: EventSource cannot send headers. */
    tokenInQuery?: boolean;
    /** A node-to-node route: only another node's signed call opens it (see routes/cluster.ts). */
    cluster?: boolean;
    /** A per-client call a node forwards to the node holding the client: the API's credentials, or another node's signed call. */
    forwarded?: boolean;
  }
}

export const ipOf = (req: FastifyRequest) => plainAddress(req.ip);

/** The bearer token presented: the Authorization header, or ?token= on the routes that take it there. */
export function presentedToken(req: FastifyRequest): string | undefined {
  const header = /^Bearer +(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
  if (header || !req.routeOptions.config.tokenInQuery) return header;
  const q = (req.query as { token?: unknown }).token;
  return typeof q === 'string' && q ? q : undefined;
}

function basicOf(req: FastifyRequest): { user: string; password: string } | undefined {
  const m = /^Basic +([A-Za-z0-9+/=]+)$/i.exec(req.headers.authorization ?? '');
  if (!m) return undefined;
  const text = Buffer.from(m[1]!, 'base64').toString('utf8');
  const i = text.indexOf(':');
  return i < 0 ? undefined : { user: text.slice(0, i), password: text.slice(i + 1) };
}

// Names come from the peer: quoted and cut so they cannot forge or flood log lines.
const shown = (name: string) => JSON.stringify(name.length > 64 ? `${name.slice(0, 64)}...` : name);

export type Verdict = { ok: true } | { ok: false; bannedMs: number };

export interface AuthOptions {
  /** The [api] auth credentials; an empty user means no auth (allowed on loopback only). */
  user: string;
  password: string;
  tokens: Tokens;
  throttle: LoginThrottle;
  log: Logger;
  logIntervalMs?: number;
}

/**
 * Who may use the API: decided on the route that matched (its config), never on the URL string, since
 * the router decodes what the string encodes. Basic auth and POST /login share the API's login throttle
 * ([api] max_failed_login, per source and user, apart from client logins'); failures are logged at a bounded rate.
 */
export class ApiAuth {
  private readonly lines: LogLimiter;

  constructor(private readonly o: AuthOptions) {
    this.lines = new LogLimiter(o.log, o.logIntervalMs);
  }

  /**
   * Checks a user name and password from `ip`; a banned pair is refused before the password is looked at,
   * and an address barred from unknown user names may still try the real one (its own count bans it).
   */
  verify(ip: string, user: string, password: string): Verdict {
    const t = this.o.throttle;
    const attempt = t.begin(ip, user);
    if (attempt.bannedMs > 0) return { ok: false, bannedMs: attempt.bannedMs };
    // Both compared always: which part was wrong does not show in the timing either.
    const userOk = safeEqual(user, this.o.user);
    const passwordOk = safeEqual(password, this.o.password);
    if (userOk && passwordOk) {
      t.succeeded(ip, user);
      return { ok: true };
    }
    // Past the unknown-name limit such names are no longer counted, but still answered 401 as any failure:
    // a 429 only for unknown names would tell which name is the API's.
    if (!userOk && t.sourceBannedFor(ip) > 0) {
      t.cancel(ip, user);
      this.lines.warn(
        'api-ban',
        `API logins from ${ip}: refused a login as ${shown(user)}, the address is barred from unknown user names after ${t.maxFailed * SOURCE_FACTOR} failures`,
      );
      return { ok: false, bannedMs: 0 };
    }
    const ban = t.failed(ip, attempt, userOk);
    this.lines.warn('api-login-failed', `failed API login as ${shown(user)} from ${ip}`);
    if (ban === 'account')
      this.lines.warn(
        'api-ban',
        `API logins as ${shown(user)} from ${ip}: ${t.maxFailed} failed logins, banned for ${formatBan(t.bannedFor(ip, user))} ([api] max_failed_login)`,
      );
    if (ban === 'source')
      this.lines.warn(
        'api-ban',
        `API logins from ${ip}: ${t.maxFailed * SOURCE_FACTOR} failed logins as unknown users, the address may try only the real user for ${formatBan(t.sourceBannedFor(ip))}`,
      );
    return { ok: false, bannedMs: 0 };
  }

  /** Answers 401 or 429 when the request may not go on; the onRequest hook, before any body is read. */
  readonly hook = async (req: FastifyRequest, reply: FastifyReply) => {
    if (req.routeOptions.config.public) return;
    // Answers with data must not stay in caches; the dashboard's files are public and may.
    reply.header('cache-control', 'no-store');
    if (!this.o.user) return;
    const token = presentedToken(req);
    if (token && this.o.tokens.valid(token)) return;
    const basic = token ? undefined : basicOf(req);
    if (basic) {
      const v = this.verify(ipOf(req), basic.user, basic.password);
      if (v.ok) return;
      if (v.bannedMs > 0) return this.refuseBanned(reply, ipOf(req), basic.user, v.bannedMs);
    }
    // A stale token gets a Bearer challenge: a Basic one would make the browser pop up its login dialog over the dashboard.
    reply.header('www-authenticate', token ? 'Bearer realm="rportd", error="invalid_token"' : 'Basic realm="rportd"');
    return fail(
      reply,
      401,
      'unauthorized',
      'log in: HTTP basic auth with the [api] auth credentials, or a bearer token from POST /api/v1/login',
    );
  };

  refuseBanned(reply: FastifyReply, ip: string, user: string, ms: number) {
    reply.header('retry-after', String(Math.ceil(ms / 1000)));
    const until = new Date(Date.now() + ms).toISOString();
    return fail(
      reply,
      429,
      'too_many_failed_logins',
      `too many failed logins as ${shown(user)} from ${ip}: try again after ${until} (in ${formatBan(ms)})`,
    );
  }
}
