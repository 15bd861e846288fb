import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errorTitle, NodeUnavailable, type Cluster } from '../../cluster/cluster.js';
import { sha256, SIGNATURE_HEADER } from '../../cluster/signature.js';
import { errorMessage } from '../../log.js';
import { checkStale } from '../../server/client-connection.js';
import type { NodeRow } from '../../server/store/index.js';
import type { RemoteRun } from '../../server/jobs/job-service.js';
import { Refusal } from '../../server/refusal.js';
import type { ApiOptions } from '../api-server.js';
import { ApiError } from '../errors.js';
import { idParams } from './schemas.js';

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
  const why = typeof header !== 'string' ? 'it is given more than once' : o.cluster ? o.cluster.verify(req.method, req.url, header) : 'this node is in no cluster';
  if (typeof why === 'string') return new ApiError(401, 'unauthorized', `node-to-node signature refused: ${why}`);
  const config = req.routeOptions.config;
  if (!config.cluster && !config.forwarded) return new ApiError(403, 'forbidden', `${req.method} ${req.url.split('?')[0]} is not a node-to-node call: the cluster signature opens only those (use the [api] auth credentials)`);
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
export async function forwardToHolder(o: ApiOptions, req: FastifyRequest, reply: FastifyReply, clientId: string): Promise<FastifyReply | undefined> {
  if (!o.cluster || fromPeer(req)) return undefined;
  let node: NodeRow | undefined;
  try {
    node = await o.registry.holder(clientId);
  } catch (err) {
    throw new ApiError(503, 'database_unavailable', `which node holds client "${clientId}" is unknown: the registry database is out of reach (${errorMessage(err)})`);
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

/** A multi-client job's job for a client on another node: that node sends it (POST /api/v1/cluster/jobs/{jid}/run). */
function remoteRun(cluster: Cluster): RemoteRun {
  return async (node, jid) => {
    const r = await cluster.forward(node, { method: 'POST', url: `/api/v1/cluster/jobs/${encodeURIComponent(jid)}/run`, body: {} });
    if (r.status !== 200) throw new Error(`node ${node.id}, which holds the client, did not run the job: ${errorTitle(r.body, `status ${r.status}`)}`);
  };
}

/** Node-to-node routes (signed calls only) and GET /api/v1/cluster. */
export function clusterRoutes(app: FastifyInstance, o: ApiOptions): void {
  const cluster = o.cluster;
  if (!cluster) return;
  o.jobs.remote = remoteRun(cluster);

  // Another node created a job of a multi-client job for a client held here: it goes out from here.
  app.post<{ Params: { jid: string } }>('/api/v1/cluster/jobs/:jid/run', {
    config: { cluster: true },
    schema: { params: { type: 'object', required: ['jid'], properties: { jid: { type: 'string', minLength: 1, maxLength: 64 } } } },
  }, async (req) => {
    const job = await o.jobs.runStored(req.params.jid);
    if (!job) throw new ApiError(404, 'not_found', `no job "${req.params.jid}" waiting to be sent`);
    return { data: { jid: job.jid, status: job.status, error: job.error } };
  });

  // Another node has a new connection of a client id this node holds: the session here goes if it is stale.
  app.post<{ Params: { id: string }; Body: { pid: number; process_start: number; hostname: string; address: string; node_id: string } }>('/api/v1/cluster/clients/:id/takeover', {
    config: { cluster: true },
    schema: {
      params: idParams,
      body: {
        type: 'object', required: ['pid', 'process_start', 'hostname', 'address', 'node_id'], additionalProperties: false,
        properties: { pid: { type: 'integer' }, process_start: { type: 'integer' }, hostname: { type: 'string', maxLength: 255 }, address: { type: 'string', maxLength: 100 }, node_id: { type: 'string', maxLength: 100 } },
      },
    },
  }, async (req) => {
    const old = o.registry.get(req.params.id);
    if (!old) return { data: { replaced: false } };
    const b = req.body;
    try {
      await checkStale(old, { ...old.info, pid: b.pid, processStart: b.process_start, hostname: b.hostname }, b.address, cluster.checkTimeoutMs);
    } catch (err) {
      if (err instanceof Refusal) throw new ApiError(409, 'duplicate', err.message);
      throw err;
    }
    o.log.info(`client ${old.info.id} connected again on node ${b.node_id} from ${b.address}: its session here is stale and goes`);
    o.registry.delete(old);
    old.close(`replaced by a new connection of the same client on node ${b.node_id}`);
    return { data: { replaced: true } };
  });

  app.get('/api/v1/cluster', async () => ({ data: cluster.status() }));
}
