import type { FastifyInstance } from 'fastify';
import { hashPassword } from '../../server/credentials.js';
import type { ApiOptions } from '../context.js';
import { ApiError } from '../errors.js';
import { applyListQuery, parseListQuery, type RawQuery } from '../list-query.js';
import { idParams } from './schemas.js';

const body = {
  type: 'object',
  required: ['id', 'password'],
  additionalProperties: false,
  properties: {
    id: { type: 'string', minLength: 1, maxLength: 200, pattern: '^[^:\\s]+$' },
    password: { type: 'string', minLength: 8, maxLength: 1000 },
  },
} as const;

/**
 * Client credentials added through the API: RPort's /clients-auth, and /credentials, rport's first name
 * for them, which keeps its answers (201 with the credential; DELETE removes one that clients use).
 * Passwords are stored as bcrypt hashes and never shown.
 */
export function clientsAuthRoutes(app: FastifyInstance, o: ApiOptions): void {
  const all = async () =>
    (await o.registry.credentials()).map((c) => ({
      id: c.id,
      source: 'api',
      created_at: new Date(c.created_at).toISOString(),
    }));
  const inConfig = (id: string) =>
    new ApiError(
      405,
      'ERR_CODE_CLIENT_AUTH_RO',
      `client credential "${id}" is defined in the server's config ([server] auth or auth_file): change it there`,
    );

  for (const base of ['/api/v1/clients-auth', '/api/v1/credentials']) {
    const rport = base.endsWith('/clients-auth');

    app.get<{ Querystring: RawQuery }>(base, async (req) =>
      applyListQuery(await all(), parseListQuery(req.query, { resource: 'clients-auth', filterable: ['id'] })),
    );

    app.get<{ Params: { id: string } }>(`${base}/:id`, { schema: { params: idParams } }, async (req) => {
      const c = (await all()).find((x) => x.id === req.params.id);
      if (!c) throw new ApiError(404, 'not_found', `no client credential "${req.params.id}" added through the API`);
      return { data: c };
    });

    app.post<{ Body: { id: string; password: string } }>(base, { schema: { body } }, async (req, reply) => {
      const { id, password } = req.body;
      if (o.credentials.fromConfig(id))
        throw new ApiError(
          409,
          rport ? 'ERR_CODE_ALREADY_EXIST' : 'conflict',
          `client credential "${id}" is defined in the server's config ([server] auth or auth_file)`,
        );
      if (!(await o.registry.addCredential(id, await hashPassword(password))))
        throw new ApiError(
          409,
          rport ? 'ERR_CODE_ALREADY_EXIST' : 'conflict',
          `client credential "${id}" exists already`,
        );
      return rport ? reply.code(204).send() : reply.code(201).send({ data: { id, source: 'api' } });
    });

    app.delete<{ Params: { id: string }; Querystring: { force?: string } }>(
      `${base}/:id`,
      {
        schema: {
          params: idParams,
          querystring: {
            type: 'object',
            additionalProperties: false,
            properties: { force: { type: 'string', pattern: '^(0|1|true|false)$' } },
          },
        },
      },
      async (req, reply) => {
        const { id } = req.params;
        if (o.credentials.fromConfig(id)) {
          if (rport) throw inConfig(id);
          throw new ApiError(
            409,
            'conflict',
            `client credential "${id}" is defined in the server's config and cannot be removed through the API`,
          );
        }
        if (!(await o.registry.hasCredential(id))) throw new ApiError(404, 'not_found', `no client credential "${id}"`);
        // RPort's rule: a credential that clients registered with goes only with force (they could not log in again);
        // /credentials keeps rport's first answer, force by default.
        const users = await o.registry.clientsOf(id);
        const force = req.query.force === undefined ? !rport : req.query.force === 'true' || req.query.force === '1';
        if (users.length > 0 && !force) {
          throw new ApiError(
            409,
            'ERR_CODE_CLIENT_AUTH_HAS_CLIENT',
            `client credential "${id}" is used by ${users.length} client(s) (${users.slice(0, 5).join(', ')}${users.length > 5 ? ', ...' : ''}): delete it with force=true`,
          );
        }
        await o.registry.deleteCredential(id);
        return reply.code(204).send();
      },
    );
  }
}
