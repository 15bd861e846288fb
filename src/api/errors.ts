import type { FastifyReply } from 'fastify';
import type { TunnelErrorCode } from '../server/tunnels/index.js';

/**
 * Every error the API answers, in RPort's envelope: {"errors": [{"code", "title", "detail"}]} with the
 * matching status. The title is the one line that says what is wrong and how to fix it; detail adds
 * what a caller may want beyond it (often nothing).
 */
export function fail(reply: FastifyReply, status: number, code: string, title: string, detail = '') {
  return reply.code(status).send({ errors: [{ code, title, detail }] });
}

/** A request the API refuses, thrown from helpers; the error handler answers it with fail(). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly detail = '',
  ) {
    super(message);
  }
}

/** 400 for a request that names what this server does not do: the caller learns it instead of having it dropped. */
export const notImplemented = (what: string, why: string) =>
  new ApiError(400, 'not_implemented', `${what} is not implemented by rport: ${why}`);

/** The HTTP status the API answers for each reason a tunnel request fails. */
export const TUNNEL_ERROR_STATUS: Record<TunnelErrorCode, number> = {
  bad_request: 400,
  bind_address_not_allowed: 400,
  port_not_allowed: 400,
  too_many_tunnels: 400,
  tunnel_refused: 403,
  client_not_connected: 409,
  port_unavailable: 409,
  client_unavailable: 502,
  database_unavailable: 503,
};
