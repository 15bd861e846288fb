import type { ClientRecord } from '../server/client-registry.js';

const iso = (t: number | null | undefined) => (t ? new Date(t).toISOString() : null);

/** A client's own fields as JSON. */
export function describeClient(r: ClientRecord) {
  const { row, session: live, watchdog } = r;
  const here = !!live;
  const remote = r.connected && !here;
  return {
    id: row.id,
    name: row.name,
    tags: r.tags,
    hostname: row.hostname,
    os: row.os,
    arch: row.arch,
    version: row.version,
    pid: row.pid,
    process_start: iso(row.process_start),
    address: row.address,
    auth_id: row.auth_id,
    connected: r.connected,
    /** The node that holds the client (null when disconnected). */
    node_id: r.nodeId,
    session_id: live?.sessionId ?? (remote ? row.session_id : null),
    connected_since: live ? iso(live.connectedAt) : remote ? iso(row.connected_at) : null,
    disconnected_at: r.connected ? null : iso(row.disconnected_at),
    last_seen: iso(live?.lastSeenAt ?? row.last_seen_at),
    last_ping: iso(live?.lastPingAt),
    last_ping_rtt_ms: live?.lastRttMs ?? null,
    watchdog: {
      integration: watchdog?.integration ?? false,
      systemd_watchdog_sec: watchdog?.systemd_watchdog_sec ?? null,
      heartbeat_budget_sec: watchdog?.heartbeat_budget_sec ?? null,
      last_state: watchdog?.last_state ?? null,
      armed: !!watchdog && (watchdog.integration || watchdog.systemd_watchdog_sec !== null),
      restarts_24h: r.restarts24h,
    },
  };
}

/** A client as the API shows it: rport's fields and RPort's names for what both have. */
export function clientView<T>(r: ClientRecord, tunnels: T[]) {
  const c = describeClient(r);
  return {
    ...c,
    os_arch: c.arch,
    client_auth_id: c.auth_id,
    connection_state: c.connected ? 'connected' : 'disconnected',
    last_heartbeat_at: c.last_seen,
    /** A stock RPort client's last report of pending OS updates; rport's client sends none (null). */
    updates_status: r.row.updates_status ? (JSON.parse(r.row.updates_status) as unknown) : null,
    tunnels,
  };
}

/** Every field of clientView: what fields[clients] may name (the compatibility test checks it against a real client). */
export const CLIENT_FIELDS = [
  'id',
  'name',
  'tags',
  'hostname',
  'os',
  'arch',
  'version',
  'pid',
  'process_start',
  'address',
  'auth_id',
  'connected',
  'node_id',
  'session_id',
  'connected_since',
  'disconnected_at',
  'last_seen',
  'last_ping',
  'last_ping_rtt_ms',
  'watchdog',
  'os_arch',
  'client_auth_id',
  'connection_state',
  'last_heartbeat_at',
  'updates_status',
  'tunnels',
] as const;
