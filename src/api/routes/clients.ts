import type { FastifyInstance } from 'fastify';
import type { ClientRecord } from '../../server/client-registry.js';
import type { TunnelManager } from '../../server/tunnels/index.js';
import type { ApiOptions } from '../api-server.js';
import { ApiError } from '../errors.js';
import { applyListQuery, parseListQuery, type ListForm, type RawQuery } from '../list-query.js';
import { idParams } from './schemas.js';
import { clusterTunnels } from './tunnels.js';

type Tunnel = ReturnType<TunnelManager['all']>[number];

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
    tunnels,
  };
}

/** Every field of clientView: what fields[clients] may name (the compatibility test checks it against a real client). */
export const CLIENT_FIELDS = [
  'id', 'name', 'tags', 'hostname', 'os', 'arch', 'version', 'pid', 'process_start', 'address', 'auth_id', 'connected', 'node_id', 'session_id',
  'connected_since', 'disconnected_at', 'last_seen', 'last_ping', 'last_ping_rtt_ms', 'watchdog',
  'os_arch', 'client_auth_id', 'connection_state', 'last_heartbeat_at', 'tunnels',
] as const;

const NOT_REPORTED = 'the rport client does not report it';
/** Client fields RPort documents that rport does not have. */
const MISSING: Record<string, string> = {
  ...Object.fromEntries(['os_full_name', 'os_version', 'os_family', 'os_kernel', 'os_virtualization_system', 'os_virtualization_role', 'cpu_family', 'cpu_model',
    'cpu_model_name', 'cpu_vendor', 'num_cpus', 'mem_total', 'timezone', 'ipv4', 'ipv6', 'labels', 'updates_status', 'ext_ip_addresses', 'client_configuration'].map((f) => [f, NOT_REPORTED])),
  allowed_user_groups: 'rport has no user groups (one API user, who sees every client)',
  groups: 'rport has no client groups (filter on tags instead)',
};

const FORM: ListForm = {
  resource: 'clients',
  filterable: ['id', 'name', 'os', 'os_arch', 'hostname', 'tags', 'version', 'address', 'client_auth_id', 'connection_state'],
  missing: MISSING,
  sortable: ['id', 'name', 'os', 'hostname', 'version'],
  fieldNames: CLIENT_FIELDS,
  own: ['connected', 'tag', 'q'],
};

/** rport's own filters, beside RPort's filter[...]: connected=true|false, tag=T, q=TEXT. */
function ownFilter(query: RawQuery): (c: ClientRecord) => boolean {
  const { connected, tag, q } = query as Record<string, string | undefined>;
  if (connected !== undefined && connected !== 'true' && connected !== 'false') throw new ApiError(400, 'bad_request', `query parameter connected = "${connected}" must be true or false`);
  for (const [k, v] of [['tag', tag], ['q', q]] as const) if (v !== undefined && v.length > 200) throw new ApiError(400, 'bad_request', `query parameter ${k} is over 200 characters`);
  const text = q?.toLowerCase();
  return (c) => (connected === undefined || String(c.connected) === connected)
    && (tag === undefined || c.tags.includes(tag))
    && (text === undefined || [c.id, c.row.name, c.row.hostname, c.row.address, ...c.tags].some((f) => f.toLowerCase().includes(text)));
}

/** GET /clients (RPort's pagination, filter[...], sort, fields[clients]; answer {data, meta: {count}}), GET/DELETE /clients/{id}. */
export function clientRoutes(app: FastifyInstance, o: ApiOptions, view: () => Promise<(t: Tunnel) => unknown>): void {
  const withTunnels = (c: ClientRecord, all: Map<string, Tunnel[]>, v: (t: Tunnel) => unknown) => clientView(c, (all.get(c.id) ?? []).map(v));

  app.get<{ Querystring: RawQuery }>('/api/v1/clients', async (req) => {
    const q = parseListQuery(req.query, FORM);
    const keep = ownFilter(req.query);
    // RPort's order when none is asked for: by id.
    if (!q.sort.length) q.sort = [{ field: 'id', desc: false }];
    const [clients, v] = await Promise.all([o.registry.clients(), view()]);
    const all = await o.tunnels.listing(clients, o.registry.cluster.peers());
    return applyListQuery(clients.filter(keep).map((c) => withTunnels(c, all, v)), q);
  });

  app.get<{ Params: { id: string }; Querystring: RawQuery }>('/api/v1/clients/:id', { schema: { params: idParams } }, async (req) => {
    const q = parseListQuery(req.query, { resource: 'clients', filterable: [], fieldNames: CLIENT_FIELDS, missing: MISSING });
    const c = await o.registry.client(req.params.id);
    if (!c) throw new ApiError(404, 'not_found', `no client with id "${req.params.id}"`);
    const [all, v] = await Promise.all([clusterTunnels(o), view()]);
    return { data: applyListQuery([withTunnels(c, all, v)], q).data[0] };
  });

  app.delete<{ Params: { id: string } }>('/api/v1/clients/:id', { schema: { params: idParams } }, async (req, reply) => {
    const c = await o.registry.client(req.params.id);
    if (!c) throw new ApiError(404, 'not_found', `no client with id "${req.params.id}"`);
    if (c.connected) throw new ApiError(409, 'client_connected', `client "${c.id}" is connected: only disconnected clients can be deleted`);
    o.tunnels.forget(c.id);
    await o.registry.deleteClient(c.id);
    return reply.code(204).send();
  });
}
