import type { FastifyInstance } from 'fastify';
import type { LiveOutput } from '../../server/jobs/job-service.js';
import type { TunnelManager } from '../../server/tunnels.js';
import type { ApiOptions } from '../api-server.js';
import { presentedToken } from '../auth.js';
import type { Tokens } from '../tokens.js';
import { clientView } from './clients.js';
import { clusterTunnels } from './tunnels.js';

const EVENTS_MIN_INTERVAL_MS = 1000;

type Tunnel = ReturnType<TunnelManager['all']>[number];

/** GET /events: the dashboard's live client list and job output (server-sent events). */
export function eventRoutes(app: FastifyInstance, o: ApiOptions, tokens: Tokens, viewer: () => Promise<(t: Tunnel) => unknown>): void {
  // Live updates for the dashboard: the whole client list when anything changed, at most once a second
  // (a large fleet's pings change something many times a second).
  // No HEAD: a stream has no head to give, the request would hang.
  app.get('/api/v1/events', { config: { tokenInQuery: true }, exposeHeadRoute: false }, (req, reply) => {
    const token = presentedToken(req);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    const send = () => {
      Promise.all([o.registry.clients(), clusterTunnels(o), viewer()]).then(([clients, all, v]) => {
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
    // Jobs: their live output as it comes (the client paces it), and a note when one changed.
    const onOutput = (out: LiveOutput) => res.write(`event: job-output\ndata: ${JSON.stringify(out)}\n\n`);
    const onJob = (jid: string, clientId: string | undefined) => res.write(`event: job\ndata: ${JSON.stringify({ jid, client_id: clientId ?? null })}\n\n`);
    o.jobs.on('output', onOutput);
    o.jobs.on('changed', onJob);
    const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    // A stream opened with a token ends with it: logout, eviction or expiry.
    const unwatch = token && tokens.valid(token) ? tokens.watch(token, () => res.end()) : () => {};
    req.raw.on('close', () => {
      unwatch();
      off();
      o.jobs.off('output', onOutput);
      o.jobs.off('changed', onJob);
      clearTimeout(pending);
      clearInterval(keepAlive);
    });
  });
}
