import type { FastifyReply, FastifyRequest } from 'fastify';
import { NodeUnavailable } from '../cluster/cluster.js';
import { sha256, SIGNATURE_HEADER } from '../cluster/signature.js';
import { errorMessage } from '../log.js';
import type { NodeRow } from '../server/store/index.js';
import type { ApiOptions } from './context.js';
import { ApiError } from './errors.js';

/** Requests another node signed, with the SHA-256 its signature gives for the body. */
const peerCalls = new WeakMap<FastifyRequest, string>();

/** The request carries a valid signature of another node (checked by peerHook before anything else). */
export const fromPeer = (req: FastifyRequest): boolean => peerCalls.has(req);

/**
 * The onRequest step for node-to-node calls: a signed request is checked here, and may then reach only the
 * node-to-node routes and the per-client calls a node forwards (config `cluster`, `forwarded`), never the rest
 * of the API. Returns a refusal, 'peer' for a checked call, or undefined for a request without a signature.
 */
export function peerCheck(o: ApiOptions, req: FastifyRequest): ApiError | 'peer' | undefined {
  const header = req.headers[SIGNATURE_HEADER];
  if (header === undefined) return undefined;
  const why =
    typeof header !== 'string'
      ? 'it is given more than once'
      : o.cluster
        ? o.cluster.verify(req.method, req.url, header)
        : 'this node is in no cluster';
  if (typeof why === 'string') return new ApiError(401, 'unauthorized', `node-to-node signature refused: ${why}`);
  const config = req.routeOptions.config;
  if (!config.cluster && !config.forwarded)
    return new ApiError(
      403,
      'forbidden',
      `${req.method} ${req.url.split('?')[0]} is not a node-to-node call: the cluster signature opens only those (use the [api] auth credentials)`,
    );
  peerCalls.set(req, why.bodySha256);
  return 'peer';
}

/** The preValidation step for node-to-node calls: the body is the one the signature names. */
export function peerBodyCheck(req: FastifyRequest, bodySha256: string | undefined): ApiError | undefined {
  const signed = peerCalls.get(req);
  if (signed === undefined || signed === (bodySha256 ?? sha256(''))) return undefined;
  return new ApiError(401, 'unauthorized', 'node-to-node signature refused: the body is not the one signed');
}

/**
 * A call about a client held by another node goes to that node, once (a forwarded call is never sent on):
 * returns the reply when it was forwarded, undefined when this node answers it.
 */
export async function forwardToHolder(
  o: ApiOptions,
  req: FastifyRequest,
  reply: FastifyReply,
  clientId: string,
): Promise<FastifyReply | undefined> {
  if (!o.cluster || fromPeer(req)) return undefined;
  let node: NodeRow | undefined;
  try {
    node = await o.registry.holder(clientId);
  } catch (err) {
    throw new ApiError(
      503,
      'database_unavailable',
      `which node holds client "${clientId}" is unknown: the registry database is out of reach (${errorMessage(err)})`,
    );
  }
  if (!node) return undefined;
  let r: { status: number; body: string };
  try {
    r = await o.cluster.forward(node, { method: req.method, url: req.url, body: req.body });
  } catch (err) {
    if (err instanceof NodeUnavailable) throw new ApiError(503, 'node_unavailable', err.message);
    throw err;
  }
  return reply.code(r.status).header('x-rport-node', node.id).type('application/json; charset=utf-8').send(r.body);
}
