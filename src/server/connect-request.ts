import { createHash } from 'node:crypto';
import type { ConnectRequest, WatchdogFacts } from '../transport/protocol.js';
import { Refusal } from './refusal.js';

const refuse = (message: string) => new Refusal('refused', message);
const MAX_TAGS = 100;
/** Tunnels a client may define in [client] remotes: more than the server carries for one client anyway. */
const MAX_REMOTES = 256;
const MAX_ITEM = 256;

function stringList(r: Record<string, unknown>, k: string, max: number): string[] {
  const v = r[k] ?? [];
  if (!Array.isArray(v) || v.length > max || v.some((t) => typeof t !== 'string' || t.length > MAX_ITEM)) {
    throw refuse(
      `connection request field "${k}" must be a list of at most ${max} strings of at most ${MAX_ITEM} characters`,
    );
  }
  return v as string[];
}

/** Checks a connection request field by field; a bad one is named in the refusal. */
export function validateConnectRequest(p: unknown): ConnectRequest {
  const r = (p ?? {}) as Record<string, unknown>;
  const str = (k: string, max = 256) => {
    if (typeof r[k] !== 'string' || (r[k] as string).length > max)
      throw refuse(`connection request field "${k}" must be a string of at most ${max} characters`);
    return r[k] as string;
  };
  // Empty: the client has no id of its own (RPort's use_system_id = false); the server assigns one.
  const id = str('id', 200);
  const tags = stringList(r, 'tags', MAX_TAGS);
  const watchdog = r.watchdog === undefined ? undefined : validateWatchdogFacts(r.watchdog);
  const remotes = stringList(r, 'remotes', MAX_REMOTES);
  for (const k of ['pid', 'processStart']) {
    if (!Number.isSafeInteger(r[k])) throw refuse(`connection request field "${k}" must be an integer`);
  }
  return {
    id,
    name: str('name'),
    tags,
    hostname: str('hostname'),
    os: str('os', 64),
    arch: str('arch', 64),
    version: str('version', 64),
    pid: r.pid as number,
    processStart: r.processStart as number,
    remotes,
    watchdog,
  };
}

export function validateWatchdogFacts(w: unknown): WatchdogFacts | undefined {
  const f = w as Record<string, unknown> | null;
  if (
    !f ||
    typeof f !== 'object' ||
    typeof f.integration !== 'boolean' ||
    typeof f.heartbeat_budget_sec !== 'number' ||
    typeof f.last_state !== 'string' ||
    !(f.systemd_watchdog_sec === null || typeof f.systemd_watchdog_sec === 'number')
  ) {
    throw refuse(
      'connection request field "watchdog" must be {integration, systemd_watchdog_sec, heartbeat_budget_sec, last_state}',
    );
  }
  return {
    integration: f.integration,
    systemd_watchdog_sec: f.systemd_watchdog_sec as number | null,
    heartbeat_budget_sec: f.heartbeat_budget_sec,
    last_state: f.last_state.slice(0, 32),
  };
}

/** A string field of RPort's ConnectionRequest: a Go string, absent or null reads as "". */
function goString(r: Record<string, unknown>, k: string, max: number): string {
  const v = r[k] ?? '';
  if (typeof v !== 'string' || v.length > max)
    throw refuse(`connection request field "${k}" must be a string of at most ${max} characters`);
  return v;
}

/** One of RPort's Remotes as the spec rport's [client] remotes uses ("lhost:lport:rhost:rport"). */
function remoteSpec(r: unknown): string {
  const m = (r ?? {}) as Record<string, unknown>;
  const part = (k: string) => goString(m, k, MAX_ITEM);
  const [lhost, lport, rhost, rport] = [part('lhost'), part('lport'), part('rhost'), part('rport')];
  const bracket = (h: string) => (h.includes(':') ? `[${h}]` : h);
  // No lport: a free port on the server (port 0).
  const spec = `${lhost ? `${bracket(lhost)}:` : ''}${lport || '0'}:${bracket(rhost || '127.0.0.1')}:${rport}`;
  // Each part is bounded, the tunnel as rport's remotes hold it too (the same bound as rport's own request).
  if (spec.length > MAX_ITEM)
    throw refuse(`connection request field "Remotes" holds a tunnel longer than ${MAX_ITEM} characters`);
  return spec;
}

/**
 * A stock RPort client's ConnectionRequest (Go field names) as rport's: checked field by field as rport's
 * own. It has no pid: the same SessionID (one per client process) tells a reconnect from a second process.
 */
function validateRportConnectionRequest(p: unknown): ConnectRequest {
  if (typeof p !== 'object' || p === null || Array.isArray(p))
    throw refuse('the connection request is not a JSON object');
  const r = p as Record<string, unknown>;
  const tags = r.Tags === null ? [] : stringList(r, 'Tags', MAX_TAGS);
  const remotes = r.Remotes ?? [];
  if (!Array.isArray(remotes) || remotes.length > MAX_REMOTES)
    throw refuse(`connection request field "Remotes" must be a list of at most ${MAX_REMOTES} tunnels`);
  const session = goString(r, 'SessionID', 64);
  return {
    id: goString(r, 'ID', 200),
    name: goString(r, 'Name', 256),
    tags,
    hostname: goString(r, 'Hostname', 256),
    os: goString(r, 'OSKernel', 64) || goString(r, 'OS', 256).slice(0, 64),
    arch: goString(r, 'OSArch', 64),
    version: goString(r, 'Version', 64),
    pid: 0,
    processStart: parseInt(createHash('sha256').update(session).digest('hex').slice(0, 12), 16),
    remotes: remotes.map(remoteSpec),
    watchdog: undefined,
  };
}

/** The connection request's payload: rport's form of it, and RPort's Remotes as sent (the answer echoes them). */
export function parseRportConnectionRequest(data: Buffer | undefined): { request: ConnectRequest; remotes: unknown } {
  let json: { Remotes?: unknown };
  try {
    json = JSON.parse((data ?? Buffer.alloc(0)).toString('utf8')) as { Remotes?: unknown };
  } catch {
    throw refuse('the connection request is not JSON');
  }
  return { request: validateRportConnectionRequest(json), remotes: json?.Remotes ?? [] };
}
