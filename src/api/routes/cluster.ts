import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errorMessage } from '../../log.js';
import { checkStale } from '../../server/client-connection.js';
import type { NodeRow } from '../../server/store.js';
import { Refusal } from '../../server/refusal.js';
import type { ApiOptions } from '../api-server.js';
import { ApiError } from '../errors.js';
import { idParams } from './schemas.js';

/** The header a node presents the cluster secret in when it calls another node. */
export const CLUSTER_HEADER = 'x-rport-cluster-secret';

/** What the API needs of the cluster (src/cluster/cluster.ts). */
export interface ApiCluster {
  readonly nodeId: string;
  /** check_clients_connection_timeout: bounds the ping of a session another node asks about. */
  readonly checkTimeoutMs: number;
  /** Whether a request carries the cluster secret (then it comes from another node). */
  trusted(req: FastifyRequest): boolean;
  /** Sends the request on to the node, secret attached; answers 503 when that node does not answer in time. */
  forward(node: NodeRow, req: FastifyRequest): Promise<{ status: number; body: string }>;
  /** For /status: this node, its database, the cluster's nodes. */
  status(): Record<string, unknown>;
}

/**
 * A call about a client held by another node goes to that node, once (a forwarded call is never sent on):
 * returns the reply when it was forwarded, undefined when this node answers it.
 */
export async function forwardToHolder(o: ApiOptions, req: FastifyRequest, reply: FastifyReply, clientId: string): Promise<FastifyReply | undefined> {
  if (!o.cluster || o.cluster.trusted(req)) return undefined;
  let node: NodeRow | undefined;
  try {
    node = await o.registry.holder(clientId);
  } catch (err) {
    throw new ApiError(503, 'database_unavailable', `which node holds client "${clientId}" is unknown: the registry database is out of reach (${errorMessage(err)})`);
  }
  if (!node) return undefined;
  const r = await o.cluster.forward(node, req);
  return reply.code(r.status).header('x-rport-node', node.id).type('application/json; charset=utf-8').send(r.body);
}

/** Node-to-node routes (cluster secret only) and GET /api/v1/cluster/nodes. */
export function clusterRoutes(app: FastifyInstance, o: ApiOptions): void {
  const cluster = o.cluster;
  if (!cluster) return;

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
