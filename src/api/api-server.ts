import helmet from '@fastify/helmet';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import type { Logger } from '../log.js';
import type { ClientRegistry } from '../server/client-registry.js';
import type { Credentials } from '../server/credentials.js';
import type { LoginThrottle } from '../server/login-throttle.js';
import type { Metrics } from '../server/metrics.js';
import { DatabaseError } from '../server/db/db.js';
import { TunnelError, type TunnelManager } from '../server/tunnels.js';
import { VERSION } from '../version.js';
import { ApiAuth, ipOf, presentedToken } from './auth.js';
import { DASHBOARD_CSS, DASHBOARD_HTML, DASHBOARD_JS } from './dashboard.js';
import { ApiError, fail } from './errors.js';
import { clientRoutes, clientView } from './routes/clients.js';
import { clientsAuthRoutes } from './routes/clients-auth.js';
import { clusterRoutes, type ApiCluster } from './routes/cluster.js';
import { clusterTunnels, tunnelRoutes, tunnelViewer } from './routes/tunnels.js';
import { TunnelOptions } from './tunnel-options.js';
import { MAX_TOKEN_LIFETIME_SEC, Tokens } from './tokens.js';

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
  /** The cluster this node is part of: node-to-node calls, forwarding, /status. */
  cluster?: ApiCluster;
}

/** The largest request body: the largest the schemas allow (a credential, a login) fits several times over. */
export const BODY_LIMIT = 16 * 1024;
const EVENTS_MIN_INTERVAL_MS = 1000;
/** RPort's token-lifetime query parameter of /login, in seconds. */
const lifetimeQuery = { type: 'object', additionalProperties: false, properties: { 'token-lifetime': { type: 'string', pattern: '^[0-9]{1,9}$' } } } as const;
const lifetimeOf = (q: { 'token-lifetime'?: string }) => {
  const sec = q['token-lifetime'] === undefined ? undefined : Number(q['token-lifetime']);
  if (sec !== undefined && (sec < 1 || sec > MAX_TOKEN_LIFETIME_SEC)) throw new ApiError(400, 'bad_request', `querystring field "token-lifetime" = ${sec} must be 1 to ${MAX_TOKEN_LIFETIME_SEC} seconds (90 days)`);
  return sec === undefined ? undefined : sec * 1000;
};

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
  // removeAdditional off: fastify's default strips unknown parameters silently; here they are refused by name.
  const app = Fastify({ logger: false, bodyLimit: BODY_LIMIT, ajv: { customOptions: { allErrors: false, coerceTypes: false, removeAdditional: false } } });
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
  // Another node of the cluster presents the cluster secret; node-to-node routes take nothing else.
  app.addHook('onRequest', async (req, reply) => {
    if (o.cluster?.trusted(req)) return;
    if (req.routeOptions.config.cluster) return fail(reply, 401, 'unauthorized', 'a node-to-node route: only other nodes of the cluster may call it');
    return auth.hook(req, reply);
  });

  app.setNotFoundHandler((req, reply) => fail(reply, 404, 'not_found', `no such route: ${req.method} ${req.url.split('?')[0]} (the API is under /api/v1)`));
  app.setErrorHandler((err: FastifyError, _req, reply) => {
    if (err instanceof ApiError) return fail(reply, err.status, err.code, err.message, err.detail);
    if (err instanceof TunnelError) return fail(reply, err.status, err.code, err.message);
    if (err instanceof DatabaseError) return fail(reply, 503, 'database_unavailable', `${err.message}: this node serves its clients and tunnels meanwhile; try again when the database is back`);
    if (err.validation) {
      const v = err.validation[0];
      const context = err.validationContext ?? 'request';
      // An unknown parameter is named, so that a caller learns which one this server does not take.
      const extra = v?.keyword === 'additionalProperties' ? (v.params as { additionalProperty?: string }).additionalProperty : undefined;
      if (extra !== undefined) return fail(reply, 400, 'bad_request', `${context} field "${extra}" is not known here`);
      const field = v?.instancePath ? ` field "${v.instancePath.slice(1)}"` : '';
      return fail(reply, 400, 'bad_request', `${context}${field} ${v?.message ?? 'is invalid'}`);
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

  // RPort's clients may send the login as a form.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });

  app.post<{ Body: { username: string; password: string }; Querystring: { 'token-lifetime'?: string } }>('/api/v1/login', {
    ...open,
    schema: {
      querystring: lifetimeQuery,
      body: { type: 'object', required: ['username', 'password'], additionalProperties: false, properties: { username: { type: 'string', maxLength: 200 }, password: { type: 'string', maxLength: 1000 } } },
    },
  }, async (req, reply) => {
    const ip = ipOf(req);
    const ttl = lifetimeOf(req.query);
    if (o.user) {
      const v = auth.verify(ip, req.body.username, req.body.password);
      if (!v.ok && v.bannedMs > 0) return auth.refuseBanned(reply, ip, req.body.username, v.bannedMs);
      if (!v.ok) return fail(reply, 401, 'unauthorized', 'wrong username or password');
    }
    return { data: { ...tokens.issue(req.body.username, ttl), two_fa: null } };
  });

  // RPort's other login: the credentials in HTTP basic auth, checked (and throttled) by the auth hook like any route's.
  // No HEAD: it would issue a token that nobody sees.
  app.get<{ Querystring: { 'token-lifetime'?: string } }>('/api/v1/login', { schema: { querystring: lifetimeQuery }, exposeHeadRoute: false }, async (req) => ({
    data: { ...tokens.issue(o.user, lifetimeOf(req.query)), two_fa: null },
  }));

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

  app.get('/api/v1/status', async () => {
    // The database may be away: this node then says so and what it holds itself.
    const counts = await o.registry.counts().catch(() => undefined);
    return { data: {
      version: VERSION, fingerprint: o.fingerprint, uptime_sec: Math.round((Date.now() - o.startedAt) / 1000),
      clients_connected: counts?.connected ?? o.registry.size, clients_disconnected: counts ? counts.known - counts.connected : null,
      clients_known: counts?.known ?? null, clients_connected_here: o.registry.size, tunnels: o.tunnels.all().length,
      ...o.cluster?.status(),
      // RPort's facts about itself, as they are here: credentials from the config and the API, one API user, no 2FA, no tunnel proxy.
      clients_auth_mode: 'Read Write', users_auth_source: 'Static Credentials', two_fa_enabled: false, tunnel_proxy_enabled: false,
    } };
  });

  const options = new TunnelOptions(o.tunnels, (clientId, tunnelId) => {
    o.tunnels.delete(clientId, tunnelId).then((gone) => gone && o.registry.changed(), (err: Error) => o.log.warn(`tunnel ${tunnelId}: not closed at its auto-close time: ${err.message}`));
  }, o.log);
  app.addHook('onReady', () => options.init());
  app.addHook('onClose', async () => options.stop());
  const viewer = tunnelViewer(options);
  clientRoutes(app, o, viewer);
  tunnelRoutes(app, o, options);
  clientsAuthRoutes(app, o);
  clusterRoutes(app, o);

  // Live updates for the dashboard: the whole client list when anything changed, at most once a second
  // (a large fleet's pings change something many times a second).
  // No HEAD: a stream has no head to give, the request would hang.
  app.get('/api/v1/events', { config: { tokenInQuery: true }, exposeHeadRoute: false }, (req, reply) => {
    const token = presentedToken(req);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    const send = () => {
      Promise.all([o.registry.describeAll(), clusterTunnels(o), viewer()]).then(([clients, all, v]) => {
        res.write(`event: clients\ndata: ${JSON.stringify(clients.map((c) => clientView(c, (all.get(c.id) ?? []).map(v))))}\n\n`);
      }, (err: Error) => o.log.warn(`live update not sent: ${err.message}`));
    };
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
