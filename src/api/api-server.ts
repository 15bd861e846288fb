import helmet from '@fastify/helmet';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { sha256 } from '../cluster/signature.js';
import { DatabaseError } from '../server/db/db.js';
import { TunnelError } from '../server/tunnels/index.js';
import { VERSION } from '../version.js';
import { ApiAuth } from './auth.js';
import { tunnelViewer, type ApiOptions } from './context.js';
import { foreignOrigin } from './csrf.js';
import { COMMANDS_JS } from './dashboard-commands.js';
import { DASHBOARD_CSS, DASHBOARD_HTML, DASHBOARD_JS } from './dashboard.js';
import { ApiError, fail, TUNNEL_ERROR_STATUS } from './errors.js';
import { clientRoutes } from './routes/clients.js';
import { clientsAuthRoutes } from './routes/clients-auth.js';
import { fromPeer, peerBodyCheck, peerCheck } from './peers.js';
import { clusterRoutes } from './routes/cluster.js';
import { commandRoutes } from './routes/commands.js';
import { eventRoutes } from './routes/events.js';
import { loginRoutes } from './routes/login.js';
import { tunnelRoutes } from './routes/tunnels.js';
import { Tokens } from './tokens.js';

/** The largest request body: the largest the schemas allow (a credential, a login) fits several times over. */
export const BODY_LIMIT = 16 * 1024;
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
  // maxParamLength: the router's own limit (100) answered 414 before the auth hook ran, so a long id told an
  // outsider which routes take parameters; Node's header limit bounds the path, the routes check their ids.
  const app = Fastify({
    logger: false,
    bodyLimit: BODY_LIMIT,
    routerOptions: { maxParamLength: 16 << 10 },
    ajv: { customOptions: { allErrors: false, coerceTypes: false, removeAdditional: false } },
    https: o.tls ? { cert: o.tls.cert, key: o.tls.key, minVersion: o.tls.minVersion } : null,
  });
  const tokens = new Tokens(undefined, o.maxTokenLifetimeMs);
  const auth = new ApiAuth({
    user: o.user,
    password: o.password,
    tokens,
    throttle: o.throttle,
    log: o.log,
    logIntervalMs: o.logIntervalMs,
  });
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
        defaultSrc: ["'none'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'"],
        connectSrc: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
        baseUri: ["'none'"],
      },
    },
    xFrameOptions: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    // Only when this server speaks TLS itself: over plain HTTP the header is ignored, and a TLS proxy in front
    // sets its own. Not for subdomains: other services on them are not this server's to decide.
    strictTransportSecurity: o.tls ? { maxAge: 31_536_000, includeSubDomains: false } : false,
  });
  // Bodies are JSON only (and a form on POST /login, see routes/login.ts): a page on another site can post
  // text/plain or a form without asking the browser first, never JSON.
  app.removeContentTypeParser('text/plain');
  // JSON as fastify parses it, and for a node-to-node call the hash of the text its signature covers.
  const bodyHashes = new WeakMap<object, string>();
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    if (fromPeer(req)) bodyHashes.set(req, sha256(body as string));
    parseJson(req, body as string, done);
  });
  app.addHook('onRequest', async (req, reply) => {
    // Before credentials are looked at: a foreign page's request is neither run nor counted as a failed login.
    const foreign = foreignOrigin(req);
    if (foreign) return fail(reply, 403, 'forbidden_origin', foreign);
    // Another node of the cluster signs its calls; node-to-node routes take nothing else.
    const peer = peerCheck(o, req);
    if (peer instanceof ApiError) return fail(reply, peer.status, peer.code, peer.message);
    if (peer) return;
    if (req.routeOptions.config.cluster)
      return fail(reply, 401, 'unauthorized', 'a node-to-node route: only other nodes of the cluster may call it');
    return auth.hook(req, reply);
  });
  app.addHook('preValidation', async (req) => {
    const refused = peerBodyCheck(req, bodyHashes.get(req));
    if (refused) throw refused;
  });

  app.setNotFoundHandler((req, reply) =>
    fail(reply, 404, 'not_found', `no such route: ${req.method} ${req.url.split('?')[0]} (the API is under /api/v1)`),
  );
  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (err instanceof ApiError) return fail(reply, err.status, err.code, err.message, err.detail);
    if (err instanceof TunnelError) return fail(reply, TUNNEL_ERROR_STATUS[err.code], err.code, err.message);
    if (err instanceof DatabaseError)
      return fail(
        reply,
        503,
        'database_unavailable',
        `${err.message}: this node serves its clients and tunnels meanwhile; try again when the database is back`,
      );
    if (err.validation) {
      const v = err.validation[0];
      const context = err.validationContext ?? 'request';
      // An unknown parameter is named, so that a caller learns which one this server does not take.
      const extra =
        v?.keyword === 'additionalProperties'
          ? (v.params as { additionalProperty?: string }).additionalProperty
          : undefined;
      if (extra !== undefined) return fail(reply, 400, 'bad_request', `${context} field "${extra}" is not known here`);
      const field = v?.instancePath ? ` field "${v.instancePath.slice(1)}"` : '';
      return fail(reply, 400, 'bad_request', `${context}${field} ${v?.message ?? 'is invalid'}`);
    }
    if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
      return fail(
        reply,
        415,
        'bad_request',
        `the request body is ${JSON.stringify(req.headers['content-type'] ?? '')}: send JSON (content-type: application/json); only POST /api/v1/login takes a form too`,
      );
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE')
      return fail(reply, 413, 'bad_request', `the request body is over the limit of ${BODY_LIMIT} bytes`);
    if (err.statusCode && err.statusCode < 500) return fail(reply, err.statusCode, 'bad_request', err.message);
    o.log.error(`API error: ${err.message}`);
    return fail(reply, 500, 'internal', err.message);
  });

  const open = { config: { public: true } };
  app.get('/', open, async (_req, reply) => reply.type('text/html; charset=utf-8').send(DASHBOARD_HTML));
  app.get('/dashboard.css', open, async (_req, reply) => reply.type('text/css; charset=utf-8').send(DASHBOARD_CSS));
  app.get('/dashboard.js', open, async (_req, reply) =>
    reply.type('text/javascript; charset=utf-8').send(DASHBOARD_JS),
  );
  app.get('/dashboard-commands.js', open, async (_req, reply) =>
    reply.type('text/javascript; charset=utf-8').send(COMMANDS_JS),
  );

  loginRoutes(app, o, tokens, auth);

  app.get('/api/v1/status', async () => {
    // The database may be away: this node then says so and what it holds itself.
    const counts = await o.registry.counts().catch(() => undefined);
    return {
      data: {
        version: VERSION,
        fingerprint: o.fingerprint,
        uptime_sec: Math.round((Date.now() - o.startedAt) / 1000),
        clients_connected: counts?.connected ?? o.registry.size,
        clients_disconnected: counts ? counts.known - counts.connected : null,
        clients_known: counts?.known ?? null,
        clients_connected_here: o.registry.size,
        tunnels: o.tunnels.all().length,
        ...o.cluster?.status(),
        // RPort's facts about itself, as they are here: credentials from the config and the API, one API user, no 2FA, no tunnel proxy.
        clients_auth_mode: 'Read Write',
        users_auth_source: 'Static Credentials',
        two_fa_enabled: false,
        tunnel_proxy_enabled: false,
      },
    };
  });

  const options = o.tunnels.options;
  const viewer = tunnelViewer(options);
  clientRoutes(app, o, viewer);
  tunnelRoutes(app, o, options);
  clientsAuthRoutes(app, o);
  clusterRoutes(app, o);
  commandRoutes(app, o);
  eventRoutes(app, o, tokens, viewer);

  app.get('/metrics', async (_req, reply) =>
    reply.type(o.metrics.registry.contentType).send(await o.metrics.registry.metrics()),
  );

  return app;
}
