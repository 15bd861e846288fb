import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { parseDuration } from '../config/duration.js';
import { parseHostPort } from '../config/host-port.js';
import type { ClientRegistry } from '../server/client-registry.js';
import { describeSession } from '../server/client-registry.js';
import { safeEqual } from '../server/credentials.js';
import { describeTunnel, TunnelError, type TunnelManager } from '../server/tunnels.js';
import { VERSION } from '../version.js';

export interface ApiOptions {
  user: string;
  password: string;
  registry: ClientRegistry;
  tunnels: TunnelManager;
  fingerprint: string;
  startedAt: number;
}

/** Every error the API answers: {"error": {"code": ..., "message": ...}} with the matching status. */
function fail(reply: FastifyReply, status: number, code: string, message: string) {
  return reply.code(status).send({ error: { code, message } });
}

function authorized(req: FastifyRequest, o: ApiOptions): boolean {
  if (!o.user) return true;
  const m = /^Basic (.+)$/i.exec(req.headers.authorization ?? '');
  if (!m) return false;
  const text = Buffer.from(m[1]!, 'base64').toString('utf8');
  const i = text.indexOf(':');
  return i > 0 && safeEqual(text.slice(0, i), o.user) && safeEqual(text.slice(i + 1), o.password);
}

const idParams = { type: 'object', properties: { id: { type: 'string', minLength: 1, maxLength: 200 } }, required: ['id'] } as const;

/** The REST API under /api/v1, protected by [api] auth (HTTP basic), with JSON schema checks on input. */
export function createApi(o: ApiOptions): FastifyInstance {
  const app = Fastify({ logger: false, ajv: { customOptions: { allErrors: false, coerceTypes: false } } });

  app.addHook('onRequest', async (req, reply) => {
    if (!req.url.startsWith('/api/v1/')) return;
    if (!authorized(req, o)) {
      reply.header('www-authenticate', 'Basic realm="rportd"');
      return fail(reply, 401, 'unauthorized', 'HTTP basic auth with the [api] auth credentials is required');
    }
  });
  app.setNotFoundHandler((req, reply) => fail(reply, 404, 'not_found', `no such route: ${req.method} ${req.url.split('?')[0]} (the API is under /api/v1)`));
  app.setErrorHandler((err: FastifyError, _req, reply) => {
    if (err instanceof TunnelError) return fail(reply, err.status, err.code, err.message);
    if (err.validation) return fail(reply, 400, 'bad_request', `${err.validationContext ?? 'request'}${err.validation[0]?.instancePath ?? ''} ${err.validation[0]?.message ?? 'is invalid'}`.replace(/^(\w+)\/(\w+)/, '$1 field "$2"'));
    if (err.statusCode && err.statusCode < 500) return fail(reply, err.statusCode, 'bad_request', err.message);
    return fail(reply, 500, 'internal', err.message);
  });

  const clientOr404 = (id: string, reply: FastifyReply) => {
    const s = o.registry.get(id);
    if (!s) fail(reply, 404, 'not_found', `no connected client with id "${id}"`);
    return s;
  };

  app.get('/api/v1/status', async () => ({
    data: { version: VERSION, fingerprint: o.fingerprint, uptime_sec: Math.round((Date.now() - o.startedAt) / 1000), clients_connected: o.registry.size },
  }));

  app.get('/api/v1/clients', async () => ({
    data: o.registry.list().map((s) => ({ ...describeSession(s), tunnels: o.tunnels.list(s.info.id).length })),
  }));

  app.get<{ Params: { id: string } }>('/api/v1/clients/:id', { schema: { params: idParams } }, async (req, reply) => {
    const s = clientOr404(req.params.id, reply);
    if (s) return { data: { ...describeSession(s), tunnels: o.tunnels.list(s.info.id).map(describeTunnel) } };
  });

  app.get<{ Params: { id: string } }>('/api/v1/clients/:id/tunnels', { schema: { params: idParams } }, async (req) => ({
    data: o.tunnels.list(req.params.id).map(describeTunnel),
  }));

  app.put<{ Params: { id: string }; Querystring: { local?: string; remote: string; acl?: string; idle_timeout?: string } }>('/api/v1/clients/:id/tunnels', {
    schema: {
      params: idParams,
      querystring: {
        type: 'object',
        required: ['remote'],
        additionalProperties: false,
        properties: {
          local: { type: 'string', pattern: '^(\\[[0-9a-fA-F:.]+\\]:|[0-9a-zA-Z.-]*:)?[0-9]{1,5}$' },
          remote: { type: 'string', pattern: '^(\\[[0-9a-fA-F:.]+\\]|[0-9a-zA-Z.-]+):[0-9]{1,5}$' },
          acl: { type: 'string', maxLength: 4096 },
          idle_timeout: { type: 'string', maxLength: 32 },
        },
      },
    },
  }, async (req, reply) => {
    const q = req.query;
    const local = q.local ? parseHostPort(q.local.includes(':') ? q.local : `:${q.local}`) : { host: '0.0.0.0', port: 0 };
    if (!local) return fail(reply, 400, 'bad_request', `querystring field "local" = "${q.local}" is not [addr:]port`);
    const remote = parseHostPort(q.remote, '');
    if (!remote || !remote.port) return fail(reply, 400, 'bad_request', `querystring field "remote" = "${q.remote}" is not host:port with a port of 1-65535`);
    const idle = q.idle_timeout ? parseDuration(q.idle_timeout) : 0;
    if (idle === undefined || idle < 0) return fail(reply, 400, 'bad_request', `querystring field "idle_timeout" = "${q.idle_timeout}" is not a duration (use e.g. '30m')`);
    const t = await o.tunnels.create(req.params.id, { local, remote, acl: q.acl ? q.acl.split(',').map((s) => s.trim()).filter(Boolean) : [], idleTimeoutMs: idle });
    return { data: describeTunnel(t) };
  });

  app.delete<{ Params: { id: string; tunnel_id: string } }>('/api/v1/clients/:id/tunnels/:tunnel_id', async (req, reply) => {
    if (!o.tunnels.delete(req.params.id, req.params.tunnel_id)) return fail(reply, 404, 'not_found', `client "${req.params.id}" has no tunnel "${req.params.tunnel_id}"`);
    return reply.code(204).send();
  });

  return app;
}
