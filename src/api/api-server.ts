import helmet from '@fastify/helmet';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { parseDuration } from '../config/duration.js';
import { parseHostPort } from '../config/host-port.js';
import type { Logger } from '../log.js';
import type { ClientRegistry } from '../server/client-registry.js';
import { hashPassword, type Credentials } from '../server/credentials.js';
import type { LoginThrottle } from '../server/login-throttle.js';
import type { Metrics } from '../server/metrics.js';
import { describeTunnel, TunnelError, type TunnelManager } from '../server/tunnels.js';
import { VERSION } from '../version.js';
import { ApiAuth, fail, ipOf, presentedToken } from './auth.js';
import { DASHBOARD_CSS, DASHBOARD_HTML, DASHBOARD_JS } from './dashboard.js';
import { Tokens } from './tokens.js';

export interface ApiOptions {
  user: string;
  password: string;
  registry: ClientRegistry;
  tunnels: TunnelManager;
  credentials: Credentials;
  metrics: Metrics;
  fingerprint: string;
  startedAt: number;
  /** Failed API logins, counted like the client listener's. */
  throttle: LoginThrottle;
  log: Logger;
  /** How often repeated failure lines are summed up (default: a minute). */
  logIntervalMs?: number;
}

/** The largest request body: the largest the schemas allow (a credential, a login) fits several times over. */
export const BODY_LIMIT = 16 * 1024;
const EVENTS_MIN_INTERVAL_MS = 1000;
const idParams = { type: 'object', properties: { id: { type: 'string', minLength: 1, maxLength: 200 } }, required: ['id'] } as const;

export interface RouteInfo {
  method: string;
  url: string;
  public: boolean;
}
const routeTables = new WeakMap<FastifyInstance, RouteInfo[]>();

/** Every route the app has, as its router knows them: the test walks them all, so none can go without auth. */
export function apiRoutes(app: FastifyInstance): RouteInfo[] {
  return routeTables.get(app) ?? [];
}

/**
 * The REST API under /api/v1 and the dashboard at /. Auth: HTTP basic with the [api] auth credentials,
 * or a bearer token from POST /api/v1/login; routes are closed unless their config says public.
 * Input is checked by JSON schemas.
 */
export function createApi(o: ApiOptions): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: BODY_LIMIT, ajv: { customOptions: { allErrors: false, coerceTypes: false } } });
  const tokens = new Tokens();
  const auth = new ApiAuth({ user: o.user, password: o.password, tokens, throttle: o.throttle, log: o.log, logIntervalMs: o.logIntervalMs });
  const routes: RouteInfo[] = [];
  routeTables.set(app, routes);
  app.addHook('onRoute', (r) => {
    for (const method of [r.method].flat()) routes.push({ method, url: r.url, public: r.config?.public === true });
  });

  // Before the auth hook, so that refusals carry the headers too. No CORS: browsers on other origins get nothing.
  app.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'none'"], scriptSrc: ["'self'"], styleSrc: ["'self'"], imgSrc: ["'self'"], connectSrc: ["'self'"],
        formAction: ["'self'"], frameAncestors: ["'none'"], baseUri: ["'none'"],
      },
    },
    xFrameOptions: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    // The API speaks plain HTTP; HSTS is for whoever puts TLS in front of it.
    strictTransportSecurity: false,
  });
  app.addHook('onRequest', auth.hook);

  app.setNotFoundHandler((req, reply) => fail(reply, 404, 'not_found', `no such route: ${req.method} ${req.url.split('?')[0]} (the API is under /api/v1)`));
  app.setErrorHandler((err: FastifyError, _req, reply) => {
    if (err instanceof TunnelError) return fail(reply, err.status, err.code, err.message);
    if (err.validation) {
      const v = err.validation[0];
      const field = v?.instancePath ? ` field "${v.instancePath.slice(1)}"` : '';
      return fail(reply, 400, 'bad_request', `${err.validationContext ?? 'request'}${field} ${v?.message ?? 'is invalid'}`);
    }
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return fail(reply, 413, 'bad_request', `the request body is over the limit of ${BODY_LIMIT} bytes`);
    if (err.statusCode && err.statusCode < 500) return fail(reply, err.statusCode, 'bad_request', err.message);
    o.log.error(`API error: ${err.message}`);
    return fail(reply, 500, 'internal', err.message);
  });

  const open = { config: { public: true } };
  app.get('/', open, async (_req, reply) => reply.type('text/html; charset=utf-8').send(DASHBOARD_HTML));
  app.get('/dashboard.css', open, async (_req, reply) => reply.type('text/css; charset=utf-8').send(DASHBOARD_CSS));
  app.get('/dashboard.js', open, async (_req, reply) => reply.type('text/javascript; charset=utf-8').send(DASHBOARD_JS));

  app.post<{ Body: { username: string; password: string } }>('/api/v1/login', {
    ...open,
    schema: { body: { type: 'object', required: ['username', 'password'], additionalProperties: false, properties: { username: { type: 'string', maxLength: 200 }, password: { type: 'string', maxLength: 1000 } } } },
  }, async (req, reply) => {
    const ip = ipOf(req);
    if (o.user) {
      const v = auth.verify(ip, req.body.username, req.body.password);
      if (!v.ok && v.bannedMs > 0) return auth.refuseBanned(reply, ip, req.body.username, v.bannedMs);
      if (!v.ok) return fail(reply, 401, 'unauthorized', 'wrong username or password');
    }
    return { data: tokens.issue(req.body.username) };
  });

  // POST for forms and scripts, DELETE for REST clients: both revoke the token the request presents.
  for (const method of ['POST', 'DELETE'] as const) {
    app.route({
      method, url: '/api/v1/logout', handler: async (req, reply) => {
        const token = presentedToken(req);
        if (!token) return fail(reply, 400, 'bad_request', 'log out revokes a bearer token: send it as "Authorization: Bearer TOKEN" (basic auth has nothing to revoke)');
        tokens.revoke(token);
        return reply.code(204).send();
      },
    });
  }

  app.get('/api/v1/status', async () => ({
    data: {
      version: VERSION, fingerprint: o.fingerprint, uptime_sec: Math.round((Date.now() - o.startedAt) / 1000),
      clients_connected: o.registry.size, clients_known: o.registry.store.clientCount(), tunnels: o.tunnels.all().length,
    },
  }));

  const withTunnels = (c: ReturnType<ClientRegistry['describeAll']>[number]) => ({ ...c, tunnels: o.tunnels.list(c.id).map(describeTunnel) });

  app.get<{ Querystring: { connected?: string; tag?: string; q?: string } }>('/api/v1/clients', {
    schema: { querystring: { type: 'object', additionalProperties: false, properties: { connected: { type: 'string', enum: ['true', 'false'] }, tag: { type: 'string', maxLength: 200 }, q: { type: 'string', maxLength: 200 } } } },
  }, async (req) => {
    const { connected, tag, q } = req.query;
    const text = q?.toLowerCase();
    const data = o.registry.describeAll().filter((c) =>
      (connected === undefined || String(c.connected) === connected)
      && (tag === undefined || c.tags.includes(tag))
      && (text === undefined || [c.id, c.name, c.hostname, c.address, ...c.tags].some((f) => f.toLowerCase().includes(text))));
    return { data: data.map(withTunnels) };
  });

  app.get<{ Params: { id: string } }>('/api/v1/clients/:id', { schema: { params: idParams } }, async (req, reply) => {
    const c = o.registry.describeOne(req.params.id);
    return c ? { data: withTunnels(c) } : fail(reply, 404, 'not_found', `no client with id "${req.params.id}"`);
  });

  app.delete<{ Params: { id: string } }>('/api/v1/clients/:id', { schema: { params: idParams } }, async (req, reply) => {
    const c = o.registry.describeOne(req.params.id);
    if (!c) return fail(reply, 404, 'not_found', `no client with id "${req.params.id}"`);
    if (c.connected) return fail(reply, 409, 'client_connected', `client "${c.id}" is connected: only disconnected clients can be deleted`);
    o.tunnels.forget(c.id);
    o.registry.store.deleteClient(c.id);
    o.registry.changed();
    return reply.code(204).send();
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
    // No address: the server's default ([server] tunnel_bind_addresses); no port: a random one.
    const local = q.local ? parseHostPort(q.local.includes(':') ? q.local : `:${q.local}`, '') : { host: '', port: 0 };
    if (!local) return fail(reply, 400, 'bad_request', `querystring field "local" = "${q.local}" is not [addr:]port`);
    const remote = parseHostPort(q.remote, '');
    if (!remote || !remote.port) return fail(reply, 400, 'bad_request', `querystring field "remote" = "${q.remote}" is not host:port with a port of 1-65535`);
    const idle = q.idle_timeout ? parseDuration(q.idle_timeout) : 0;
    if (idle === undefined || idle < 0) return fail(reply, 400, 'bad_request', `querystring field "idle_timeout" = "${q.idle_timeout}" is not a duration (use e.g. '30m')`);
    const acl = q.acl?.split(',').map((s) => s.trim()).filter(Boolean) ?? [];
    // An acl that names no address must not become "open to all", which is what no acl means.
    if (q.acl !== undefined && acl.length === 0) return fail(reply, 400, 'bad_request', `querystring field "acl" = "${q.acl}" has no address: list addresses or CIDRs, or leave acl out to allow everyone`);
    const t = await o.tunnels.create(req.params.id, { local, remote, acl, idleTimeoutMs: idle });
    o.registry.changed();
    return { data: describeTunnel(t) };
  });

  app.delete<{ Params: { id: string; tunnel_id: string } }>('/api/v1/clients/:id/tunnels/:tunnel_id', async (req, reply) => {
    if (!o.tunnels.delete(req.params.id, req.params.tunnel_id)) return fail(reply, 404, 'not_found', `client "${req.params.id}" has no tunnel "${req.params.tunnel_id}"`);
    o.registry.changed();
    return reply.code(204).send();
  });

  app.get('/api/v1/credentials', async () => ({
    data: o.registry.store.credentials().map((c) => ({ id: c.id, source: 'api', created_at: new Date(c.created_at).toISOString() })),
  }));

  app.post<{ Body: { id: string; password: string } }>('/api/v1/credentials', {
    schema: { body: { type: 'object', required: ['id', 'password'], additionalProperties: false, properties: { id: { type: 'string', minLength: 1, maxLength: 200, pattern: '^[^:\\s]+$' }, password: { type: 'string', minLength: 8, maxLength: 1000 } } } },
  }, async (req, reply) => {
    const { id, password } = req.body;
    if (o.credentials.fromConfig(id)) return fail(reply, 409, 'conflict', `client credential "${id}" is defined in the server's config ([server] auth or auth_file)`);
    if (!o.registry.store.addCredential(id, await hashPassword(password), Date.now())) return fail(reply, 409, 'conflict', `client credential "${id}" exists already`);
    return reply.code(201).send({ data: { id, source: 'api' } });
  });

  app.delete<{ Params: { id: string } }>('/api/v1/credentials/:id', { schema: { params: idParams } }, async (req, reply) => {
    if (o.credentials.fromConfig(req.params.id)) return fail(reply, 409, 'conflict', `client credential "${req.params.id}" is defined in the server's config and cannot be removed through the API`);
    if (!o.registry.store.deleteCredential(req.params.id)) return fail(reply, 404, 'not_found', `no client credential "${req.params.id}"`);
    return reply.code(204).send();
  });

  // Live updates for the dashboard: the whole client list when anything changed, at most once a second
  // (a large fleet's pings change something many times a second).
  // No HEAD: a stream has no head to give, the request would hang.
  app.get('/api/v1/events', { config: { tokenInQuery: true }, exposeHeadRoute: false }, (req, reply) => {
    const token = presentedToken(req);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    const send = () => res.write(`event: clients\ndata: ${JSON.stringify(o.registry.describeAll().map(withTunnels))}\n\n`);
    send();
    let pending: NodeJS.Timeout | undefined;
    let lastSent = Date.now();
    const off = o.registry.onChange(() => {
      if (pending) return;
      pending = setTimeout(() => {
        pending = undefined;
        lastSent = Date.now();
        send();
      }, Math.max(0, lastSent + EVENTS_MIN_INTERVAL_MS - Date.now()));
    });
    const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    // A stream opened with a token ends with it: logout, eviction or expiry.
    const unwatch = token && tokens.valid(token) ? tokens.watch(token, () => res.end()) : () => {};
    req.raw.on('close', () => {
      unwatch();
      off();
      clearTimeout(pending);
      clearInterval(keepAlive);
    });
  });

  app.get('/metrics', async (_req, reply) => reply.type(o.metrics.registry.contentType).send(await o.metrics.registry.metrics()));

  return app;
}
