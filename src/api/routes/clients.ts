import type { FastifyInstance } from 'fastify';
import type { ClientRecord } from '../../server/client-registry.js';
import { CLIENT_FIELDS, clientView } from '../client-view.js';
import { clusterTunnels, type ApiOptions, type Tunnel } from '../context.js';
import { ApiError } from '../errors.js';
import { applyListQuery, parseListQuery, type ListForm, type RawQuery } from '../list-query.js';
import { errorMessage } from '../../log.js';
import { forwardToHolder } from '../peers.js';
import { idParams } from './schemas.js';

const NOT_REPORTED = 'the rport client does not report it';
/** How long a client may take to answer refresh_updates_status (it answers at once, then checks). */
const REFRESH_TIMEOUT_MS = 10_000;
/** Client fields RPort documents that rport does not have. */
const MISSING: Record<string, string> = {
  ...Object.fromEntries(
    [
      'os_full_name',
      'os_version',
      'os_family',
      'os_kernel',
      'os_virtualization_system',
      'os_virtualization_role',
      'cpu_family',
      'cpu_model',
      'cpu_model_name',
      'cpu_vendor',
      'num_cpus',
      'mem_total',
      'timezone',
      'ipv4',
      'ipv6',
      'labels',
      'ext_ip_addresses',
      'client_configuration',
    ].map((f) => [f, NOT_REPORTED]),
  ),
  allowed_user_groups: 'rport has no user groups (one API user, who sees every client)',
  groups: 'rport has no client groups (filter on tags instead)',
};

const FORM: ListForm = {
  resource: 'clients',
  filterable: [
    'id',
    'name',
    'os',
    'os_arch',
    'hostname',
    'tags',
    'version',
    'address',
    'client_auth_id',
    'connection_state',
  ],
  missing: MISSING,
  sortable: ['id', 'name', 'os', 'hostname', 'version'],
  fieldNames: CLIENT_FIELDS,
  own: ['connected', 'tag', 'q'],
};

/** rport's own filters, beside RPort's filter[...]: connected=true|false, tag=T, q=TEXT. */
function ownFilter(query: RawQuery): (c: ClientRecord) => boolean {
  const { connected, tag, q } = query as Record<string, string | undefined>;
  if (connected !== undefined && connected !== 'true' && connected !== 'false')
    throw new ApiError(400, 'bad_request', `query parameter connected = "${connected}" must be true or false`);
  for (const [k, v] of [
    ['tag', tag],
    ['q', q],
  ] as const)
    if (v !== undefined && v.length > 200)
      throw new ApiError(400, 'bad_request', `query parameter ${k} is over 200 characters`);
  const text = q?.toLowerCase();
  return (c) =>
    (connected === undefined || String(c.connected) === connected) &&
    (tag === undefined || c.tags.includes(tag)) &&
    (text === undefined ||
      [c.id, c.row.name, c.row.hostname, c.row.address, ...c.tags].some((f) => f.toLowerCase().includes(text)));
}

/** GET /clients (RPort's pagination, filter[...], sort, fields[clients]; answer {data, meta: {count}}), GET/DELETE /clients/{id}. */
export function clientRoutes(app: FastifyInstance, o: ApiOptions, view: () => Promise<(t: Tunnel) => unknown>): void {
  const withTunnels = (c: ClientRecord, all: Map<string, Tunnel[]>, v: (t: Tunnel) => unknown) =>
    clientView(c, (all.get(c.id) ?? []).map(v));

  app.get<{ Querystring: RawQuery }>('/api/v1/clients', async (req) => {
    const q = parseListQuery(req.query, FORM);
    const keep = ownFilter(req.query);
    // RPort's order when none is asked for: by id.
    if (!q.sort.length) q.sort = [{ field: 'id', desc: false }];
    const [clients, v] = await Promise.all([o.registry.clients(), view()]);
    const all = await o.tunnels.listing(clients, o.registry.cluster.peers());
    return applyListQuery(
      clients.filter(keep).map((c) => withTunnels(c, all, v)),
      q,
    );
  });

  app.get<{ Params: { id: string }; Querystring: RawQuery }>(
    '/api/v1/clients/:id',
    { schema: { params: idParams } },
    async (req) => {
      const q = parseListQuery(req.query, {
        resource: 'clients',
        filterable: [],
        fieldNames: CLIENT_FIELDS,
        missing: MISSING,
      });
      const c = await o.registry.client(req.params.id);
      if (!c) throw new ApiError(404, 'not_found', `no client with id "${req.params.id}"`);
      const [all, v] = await Promise.all([clusterTunnels(o), view()]);
      return { data: applyListQuery([withTunnels(c, all, v)], q).data[0] };
    },
  );

  // RPort's route: a stock client checks its pending OS updates now; the API shows them once it reports.
  app.post<{ Params: { id: string } }>(
    '/api/v1/clients/:id/updates-status',
    { schema: { params: idParams } },
    async (req, reply) => {
      const forwarded = await forwardToHolder(o, req, reply, req.params.id);
      if (forwarded) return forwarded;
      const session = o.registry.get(req.params.id);
      if (!session) throw new ApiError(404, 'not_found', `no connected client with id "${req.params.id}"`);
      await session.refreshUpdates(REFRESH_TIMEOUT_MS).catch((err: unknown) => {
        throw new ApiError(409, 'updates_not_refreshed', `client "${req.params.id}": ${errorMessage(err)}`);
      });
      return reply.code(204).send();
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/api/v1/clients/:id',
    { schema: { params: idParams } },
    async (req, reply) => {
      const c = await o.registry.client(req.params.id);
      if (!c) throw new ApiError(404, 'not_found', `no client with id "${req.params.id}"`);
      if (c.connected)
        throw new ApiError(
          409,
          'client_connected',
          `client "${c.id}" is connected: only disconnected clients can be deleted`,
        );
      o.tunnels.forget(c.id);
      await o.registry.deleteClient(c.id);
      return reply.code(204).send();
    },
  );
}
