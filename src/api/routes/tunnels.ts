import type { FastifyInstance } from 'fastify';
import { errorMessage } from '../../log.js';
import { formatHostPort } from '../../shared/host-port.js';
import { defaultBindNote, type TunnelOptions } from '../../server/tunnels/index.js';
import { clusterTunnels, tunnelViewer, type ApiOptions } from '../context.js';
import { ApiError } from '../errors.js';
import { forwardToHolder } from '../peers.js';
import { TUNNEL_QUERY_SCHEMA, tunnelAsk, type TunnelQuery } from '../tunnel-query.js';
import { idParams } from './schemas.js';

/** Bound on check_port: the client's dial has its own 10 s bound; this covers the channel around it. */
const CHECK_PORT_TIMEOUT_MS = 15_000;

/** GET /tunnels, GET/PUT /clients/{id}/tunnels, DELETE /clients/{id}/tunnels/{tunnel_id}. */
export function tunnelRoutes(app: FastifyInstance, o: ApiOptions, options: TunnelOptions): void {
  const viewer = tunnelViewer(options);

  app.get('/api/v1/tunnels', async () => {
    const [all, v] = await Promise.all([clusterTunnels(o), viewer()]);
    return {
      data: [...all.values()]
        .flat()
        .sort((a, b) => a.createdAt - b.createdAt)
        .map(v),
    };
  });

  app.get<{ Params: { id: string } }>('/api/v1/clients/:id/tunnels', { schema: { params: idParams } }, async (req) => {
    const [all, v] = await Promise.all([clusterTunnels(o), viewer()]);
    return { data: (all.get(req.params.id) ?? []).map(v) };
  });

  app.put<{ Params: { id: string }; Querystring: TunnelQuery }>(
    '/api/v1/clients/:id/tunnels',
    {
      config: { forwarded: true },
      schema: { params: idParams, querystring: TUNNEL_QUERY_SCHEMA },
    },
    async (req, reply) => {
      const ask = tunnelAsk(req.query);
      const id = req.params.id;
      const forwarded = await forwardToHolder(o, req, reply, id);
      if (forwarded) return forwarded;
      const t = await o.tunnels.create(id, ask.request);
      if (ask.checkPort) {
        const session = o.registry.get(id);
        const failed = session
          ? await session.probeTunnel(t.id, CHECK_PORT_TIMEOUT_MS).then(
              () => undefined,
              (err: unknown) => errorMessage(err),
            )
          : 'it disconnected';
        if (failed !== undefined) {
          await o.tunnels.delete(id, t.id);
          throw new ApiError(
            400,
            'ERR_CODE_REMOTE_PORT_NOT_OPEN',
            `client ${id} could not connect to ${formatHostPort(t.remote)} (${failed}): the tunnel was not created; check_port=0 creates it without this check`,
          );
        }
      }
      await options.save(id, t.id, ask);
      o.registry.changed();
      // No address asked for: where it went decides who may reach it, so the answer says it.
      return { data: { ...(await viewer())(t), ...(ask.request.local.host ? {} : { note: defaultBindNote(t) }) } };
    },
  );

  // Without force a deleted tunnel ends its open connections (rport's way); force=false asks RPort's 409 instead.
  app.delete<{ Params: { id: string; tunnel_id: string }; Querystring: { force?: string } }>(
    '/api/v1/clients/:id/tunnels/:tunnel_id',
    {
      config: { forwarded: true },
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { force: { type: 'string', pattern: '^(0|1|true|false)$' } },
        },
      },
    },
    async (req, reply) => {
      const forwarded = await forwardToHolder(o, req, reply, req.params.id);
      if (forwarded) return forwarded;
      const t = o.tunnels.list(req.params.id).find((x) => x.id === req.params.tunnel_id);
      const open = t?.sockets.size ?? 0;
      if (open > 0 && (req.query.force === 'false' || req.query.force === '0')) {
        throw new ApiError(
          409,
          'conflict',
          `tunnel "${req.params.tunnel_id}" has ${open} open connection(s): delete it with force=true to end them`,
        );
      }
      if (!t || !(await o.tunnels.delete(req.params.id, req.params.tunnel_id)))
        throw new ApiError(404, 'not_found', `client "${req.params.id}" has no tunnel "${req.params.tunnel_id}"`);
      o.registry.changed();
      return reply.code(204).send();
    },
  );
}
