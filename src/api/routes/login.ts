import type { FastifyInstance } from 'fastify';
import { formatDuration } from '../../shared/duration.js';
import type { ApiOptions } from '../context.js';
import { ipOf, presentedToken, type ApiAuth } from '../auth.js';
import { ApiError, fail } from '../errors.js';
import type { Tokens } from '../tokens.js';

/** RPort's token-lifetime query parameter of /login, in seconds. */
const lifetimeQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { 'token-lifetime': { type: 'string', pattern: '^[0-9]{1,9}$' } },
} as const;
const lifetimeOf = (tokens: Tokens, q: { 'token-lifetime'?: string }) => {
  const sec = q['token-lifetime'] === undefined ? undefined : Number(q['token-lifetime']);
  const max = tokens.maxLifetimeMs / 1000;
  if (sec !== undefined && (sec < 1 || sec > max))
    throw new ApiError(
      400,
      'bad_request',
      `querystring field "token-lifetime" = ${sec} must be 1 to ${max} seconds (${formatDuration(max * 1000)}, [api] max_token_lifetime)`,
    );
  return sec === undefined ? undefined : sec * 1000;
};

/** POST/GET /login (a bearer token for the [api] auth user), POST/DELETE /logout (revokes it). */
export function loginRoutes(app: FastifyInstance, o: ApiOptions, tokens: Tokens, auth: ApiAuth): void {
  // RPort's clients may send the login as a form: in a scope of its own, so that no other route takes one
  // (a page on another site can post a form without asking the browser first).
  app.register(async (scope) => {
    scope.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(body as string)));
    });
    scope.post<{ Body: { username: string; password: string }; Querystring: { 'token-lifetime'?: string } }>(
      '/api/v1/login',
      {
        config: { public: true },
        schema: {
          querystring: lifetimeQuery,
          body: {
            type: 'object',
            required: ['username', 'password'],
            additionalProperties: false,
            properties: { username: { type: 'string', maxLength: 200 }, password: { type: 'string', maxLength: 1000 } },
          },
        },
      },
      async (req, reply) => {
        const ip = ipOf(req);
        const ttl = lifetimeOf(tokens, req.query);
        if (o.user) {
          const v = auth.verify(ip, req.body.username, req.body.password);
          if (!v.ok && v.bannedMs > 0) return auth.refuseBanned(reply, ip, req.body.username, v.bannedMs);
          if (!v.ok) return fail(reply, 401, 'unauthorized', 'wrong username or password');
        }
        return { data: { ...tokens.issue(req.body.username, ttl), two_fa: null } };
      },
    );
  });

  // RPort's other login: the credentials in HTTP basic auth, checked (and throttled) by the auth hook like any
  // route's. With a bearer token instead, the new token is bound to it (no longer-lived one, revoked with it).
  // No HEAD: it would issue a token that nobody sees.
  app.get<{ Querystring: { 'token-lifetime'?: string } }>(
    '/api/v1/login',
    { schema: { querystring: lifetimeQuery }, exposeHeadRoute: false },
    async (req) => ({
      data: { ...tokens.issue(o.user, lifetimeOf(tokens, req.query), presentedToken(req)), two_fa: null },
    }),
  );

  // POST for forms and scripts, DELETE for REST clients: both revoke the token the request presents.
  for (const method of ['POST', 'DELETE'] as const) {
    app.route({
      method,
      url: '/api/v1/logout',
      handler: async (req, reply) => {
        const token = presentedToken(req);
        if (!token)
          return fail(
            reply,
            400,
            'bad_request',
            'log out revokes a bearer token: send it as "Authorization: Bearer TOKEN" (basic auth has nothing to revoke)',
          );
        tokens.revoke(token);
        return reply.code(204).send();
      },
    });
  }
}
