import { formatHostPort } from '../shared/host-port.js';
import type { Options, Tunnel } from '../server/tunnels/index.js';

/** A tunnel's own fields as JSON. */
function describeTunnel(t: Tunnel) {
  return {
    id: t.id,
    client_id: t.clientId,
    local: formatHostPort(t.local),
    remote: formatHostPort(t.remote),
    acl: t.acl,
    idle_timeout_sec: t.idleTimeoutMs / 1000,
    created_by: t.createdBy,
    created_at: new Date(t.createdAt).toISOString(),
    listening: !!t.listener || !!t.node?.listening,
    /** The node whose address the tunnel listens on (null while its client is disconnected). */
    node_id: t.node?.id ?? null,
    node_address: t.node?.address ?? null,
    open_connections: t.sockets.size,
    connections: t.connections,
    bytes_in: t.bytesIn,
    bytes_out: t.bytesOut,
  };
}

/** A tunnel as the API shows it: rport's fields and RPort's (lhost, lport, rhost, rport, scheme, protocol, acl as text). */
export function tunnelView(t: Tunnel, o: Options | undefined) {
  const d = describeTunnel(t);
  return {
    ...d,
    // RPort's form: one comma-separated string, null for "anyone".
    acl: d.acl.length ? d.acl.join(',') : null,
    lhost: t.local.host,
    lport: String(t.local.port),
    rhost: t.remote.host,
    rport: String(t.remote.port),
    lport_random: o?.lport_random ?? false,
    scheme: o?.scheme || null,
    protocol: 'tcp',
    http_proxy: false,
    auto_close_at: o?.auto_close_at ?? null,
  };
}
