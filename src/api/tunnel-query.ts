import { parseDuration } from '../shared/duration.js';
import { parseHostPort } from '../shared/host-port.js';
import type { TunnelRequest } from '../server/tunnels/index.js';
import { ApiError, notImplemented } from './errors.js';

/** The query of PUT /clients/{id}/tunnels: RPort's parameters, and rport's idle_timeout. */
export interface TunnelQuery {
  local?: string;
  remote: string;
  scheme?: string;
  acl?: string;
  check_port?: string;
  'idle-timeout-minutes'?: string;
  'skip-idle-timeout'?: string;
  'auto-close'?: string;
  idle_timeout?: string;
  protocol?: string;
  http_proxy?: string;
  host_header?: string;
  auth_user?: string;
  auth_password?: string;
}

/** RPort's bound on idle-timeout-minutes: a week. */
export const MAX_IDLE_TIMEOUT_MINUTES = 10080;

const flag = { type: 'string', pattern: '^(0|1|true|false)$' } as const;
const text = { type: 'string', maxLength: 1000 } as const;

/** Types and forms; the meaning (and the 400s for what is not implemented) is tunnelAsk's. */
export const TUNNEL_QUERY_SCHEMA = {
  type: 'object',
  required: ['remote'],
  additionalProperties: false,
  properties: {
    local: { type: 'string', pattern: '^(\\[[0-9a-fA-F:.]+\\]:|[0-9a-zA-Z.-]*:)?[0-9]{1,5}$' },
    // RPort's bare port ("22") is a port on the client's own loopback.
    remote: { type: 'string', pattern: '^((\\[[0-9a-fA-F:.]+\\]|[0-9a-zA-Z.-]+):)?[0-9]{1,5}$' },
    scheme: { type: 'string', pattern: '^[A-Za-z][A-Za-z0-9+.-]{0,31}$' },
    acl: { type: 'string', maxLength: 4096 },
    check_port: flag,
    'idle-timeout-minutes': { type: 'string', pattern: '^[0-9]{1,9}$' },
    'skip-idle-timeout': flag,
    'auto-close': { type: 'string', maxLength: 32 },
    idle_timeout: { type: 'string', maxLength: 32 },
    protocol: text,
    http_proxy: flag,
    host_header: text,
    auth_user: text,
    auth_password: text,
  },
} as const;

export interface TunnelAsk {
  request: TunnelRequest;
  scheme: string;
  /** 0: none. */
  autoCloseMs: number;
  /** RPort's check_port: have the client reach the target before answering. */
  checkPort: boolean;
  lportRandom: boolean;
}

const bad = (message: string) => new ApiError(400, 'bad_request', message);
const on = (v: string | undefined) => v === '1' || v === 'true';

/**
 * RPort's tunnel query as a TunnelRequest. Every parameter RPort documents is either carried out or
 * refused with a 400 that says why: none is dropped.
 */
export function tunnelAsk(q: TunnelQuery): TunnelAsk {
  if (q.protocol !== undefined && q.protocol !== 'tcp') {
    if (q.protocol === 'udp' || q.protocol === 'tcp+udp')
      throw notImplemented(`protocol=${q.protocol}`, 'tunnels carry TCP only (leave protocol out, or protocol=tcp)');
    throw bad(`querystring field "protocol" = "${q.protocol}" is not one of tcp, udp, tcp+udp`);
  }
  if (on(q.http_proxy))
    throw notImplemented(
      'http_proxy=true',
      'rportd runs no reverse proxy in front of tunnels; put one (nginx, caddy) in front of the tunnel port',
    );
  for (const name of ['host_header', 'auth_user', 'auth_password'] as const) {
    // The value is not repeated: auth_password is a secret.
    if (q[name] !== undefined)
      throw notImplemented(name, 'it configures the http_proxy reverse proxy, which rportd does not run');
  }

  // No address: the server's default ([server] tunnel_bind_addresses); no port: a random one.
  const local = q.local ? parseHostPort(q.local.includes(':') ? q.local : `:${q.local}`, '') : { host: '', port: 0 };
  if (!local) throw bad(`querystring field "local" = "${q.local}" is not [addr:]port`);
  const remote = /^\d+$/.test(q.remote) ? parseHostPort(`127.0.0.1:${q.remote}`, '') : parseHostPort(q.remote, '');
  if (!remote || !remote.port)
    throw bad(`querystring field "remote" = "${q.remote}" is not host:port or a port, with a port of 1-65535`);

  const acl =
    q.acl
      ?.split(',')
      .map((s) => s.trim())
      .filter(Boolean) ?? [];
  // An acl that names no address must not become "open to all", which is what no acl means.
  if (q.acl !== undefined && acl.length === 0)
    throw bad(
      `querystring field "acl" = "${q.acl}" has no address: list addresses or CIDRs, or leave acl out to allow everyone`,
    );

  const idleForms = [
    q.idle_timeout !== undefined && 'idle_timeout',
    q['idle-timeout-minutes'] !== undefined && 'idle-timeout-minutes',
    on(q['skip-idle-timeout']) && 'skip-idle-timeout',
  ].filter(Boolean);
  if (idleForms.length > 1)
    throw bad(
      `querystring fields ${idleForms.map((k) => `"${k}"`).join(' and ')} say the same thing: give one of them`,
    );
  let idleTimeoutMs = 0;
  if (q['idle-timeout-minutes'] !== undefined) {
    const minutes = Number(q['idle-timeout-minutes']);
    if (minutes > MAX_IDLE_TIMEOUT_MINUTES)
      throw new ApiError(
        400,
        'ERR_CODE_INVALID_IDLE_TIMEOUT',
        `querystring field "idle-timeout-minutes" = ${minutes} is over ${MAX_IDLE_TIMEOUT_MINUTES} (a week)`,
      );
    idleTimeoutMs = minutes * 60_000;
  } else if (q.idle_timeout !== undefined) {
    const ms = parseDuration(q.idle_timeout);
    if (ms === undefined || ms < 0)
      throw bad(`querystring field "idle_timeout" = "${q.idle_timeout}" is not a duration (use e.g. '30m')`);
    idleTimeoutMs = ms;
  }

  let autoCloseMs = 0;
  if (q['auto-close'] !== undefined) {
    const ms = parseDuration(q['auto-close']);
    if (ms === undefined || ms < 0)
      throw bad(
        `querystring field "auto-close" = "${q['auto-close']}" is not a duration (use e.g. '20m', '1h30m'; 0 for none)`,
      );
    autoCloseMs = ms;
  }

  return {
    request: { local, remote, acl, idleTimeoutMs },
    scheme: q.scheme?.toLowerCase() ?? '',
    autoCloseMs,
    checkPort: on(q.check_port),
    lportRandom: local.port === 0,
  };
}
