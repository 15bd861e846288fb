import type { FastifyInstance } from 'fastify';
import { errorTitle, type Cluster } from '../../cluster/cluster.js';
import { checkStale } from '../../server/client-connection.js';
import type { RemoteRun } from '../../server/jobs/job-service.js';
import { Refusal } from '../../server/refusal.js';
import type { ApiOptions } from '../context.js';
import { ApiError } from '../errors.js';
import { idParams } from './schemas.js';

/** A multi-client job's job for a client on another node: that node sends it (POST /api/v1/cluster/jobs/{jid}/run). */
function remoteRun(cluster: Cluster): RemoteRun {
  return async (node, jid) => {
    const r = await cluster.forward(node, {
      method: 'POST',
      url: `/api/v1/cluster/jobs/${encodeURIComponent(jid)}/run`,
      body: {},
    });
    if (r.status !== 200)
      throw new Error(
        `node ${node.id}, which holds the client, did not run the job: ${errorTitle(r.body, `status ${r.status}`)}`,
      );
  };
}

/** Node-to-node routes (signed calls only) and GET /api/v1/cluster. */
export function clusterRoutes(app: FastifyInstance, o: ApiOptions): void {
  const cluster = o.cluster;
  if (!cluster) return;
  o.jobs.remote = remoteRun(cluster);

  // Another node created a job of a multi-client job for a client held here: it goes out from here.
  app.post<{ Params: { jid: string } }>(
    '/api/v1/cluster/jobs/:jid/run',
    {
      config: { cluster: true },
      schema: {
        params: {
          type: 'object',
          required: ['jid'],
          properties: { jid: { type: 'string', minLength: 1, maxLength: 64 } },
        },
      },
    },
    async (req) => {
      const job = await o.jobs.runStored(req.params.jid);
      if (!job) throw new ApiError(404, 'not_found', `no job "${req.params.jid}" waiting to be sent`);
      return { data: { jid: job.jid, status: job.status, error: job.error } };
    },
  );

  // Another node has a new connection of a client id this node holds: the session here goes if it is stale.
  app.post<{
    Params: { id: string };
    Body: { pid: number; process_start: number; hostname: string; address: string; node_id: string };
  }>(
    '/api/v1/cluster/clients/:id/takeover',
    {
      config: { cluster: true },
      schema: {
        params: idParams,
        body: {
          type: 'object',
          required: ['pid', 'process_start', 'hostname', 'address', 'node_id'],
          additionalProperties: false,
          properties: {
            pid: { type: 'integer' },
            process_start: { type: 'integer' },
            hostname: { type: 'string', maxLength: 255 },
            address: { type: 'string', maxLength: 100 },
            node_id: { type: 'string', maxLength: 100 },
          },
        },
      },
    },
    async (req) => {
      const old = o.registry.get(req.params.id);
      if (!old) return { data: { replaced: false } };
      const b = req.body;
      try {
        await checkStale(
          old,
          { ...old.info, pid: b.pid, processStart: b.process_start, hostname: b.hostname },
          b.address,
          cluster.checkTimeoutMs,
        );
      } catch (err) {
        if (err instanceof Refusal) throw new ApiError(409, 'duplicate', err.message);
        throw err;
      }
      o.log.info(
        `client ${old.info.id} connected again on node ${b.node_id} from ${b.address}: its session here is stale and goes`,
      );
      o.registry.delete(old);
      old.close(`replaced by a new connection of the same client on node ${b.node_id}`);
      return { data: { replaced: true } };
    },
  );

  app.get('/api/v1/cluster', async () => ({ data: cluster.status() }));
}
