import { formatHostPort, parseHostPort } from '../../shared/host-port.js';
import type { TunnelRow } from '../store/tunnels.js';
import type { Tunnel, TunnelRequest } from './tunnel.js';

/** The row of a tunnel as it is now (its port once chosen): its endpoints formatted here, on the way out. */
export function tunnelRow(t: Tunnel): TunnelRow {
  return {
    id: t.id,
    client_id: t.clientId,
    local_host: t.local.host,
    local_port: t.local.port,
    remote: formatHostPort(t.remote),
    acl: JSON.stringify(t.acl),
    idle_timeout_ms: t.idleTimeoutMs,
    created_by: t.createdBy,
    source: t.source,
    created_at: t.createdAt,
  };
}

/** What a stored row asks for, its target parsed here, on the way in; throws when the row cannot be read. */
export function rowRequest(row: TunnelRow): TunnelRequest {
  const remote = parseHostPort(row.remote, '');
  if (!remote) throw new Error(`its target "${row.remote}" is not host:port`);
  return {
    local: { host: row.local_host, port: row.local_port },
    remote,
    acl: JSON.parse(row.acl) as string[],
    idleTimeoutMs: row.idle_timeout_ms,
  };
}

/** A stored row, for messages. */
export function describeRow(row: TunnelRow): string {
  return `stored tunnel ${row.id} of client ${row.client_id} (${formatHostPort({ host: row.local_host, port: row.local_port })} -> ${row.remote})`;
}
