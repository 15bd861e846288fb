import type { FastifyInstance } from 'fastify';
import type { LiveOutput } from '../../server/jobs/job-service.js';
import { clientView } from '../client-view.js';
import { clusterTunnels, type ApiOptions, type Tunnel } from '../context.js';
import { presentedToken } from '../auth.js';
import { fail } from '../errors.js';
import type { Tokens } from '../tokens.js';

const EVENTS_MIN_INTERVAL_MS = 1000;
/** Event streams open at once, in all and from one address: each gets a copy of every event. */
export const MAX_EVENT_STREAMS = 64;
export const MAX_EVENT_STREAMS_PER_ADDRESS = 16;
/**
 * Bytes of events one stream may have waiting for its reader: past that the reader has stopped (or is far too
 * slow), and the stream ends rather than hold every later event in rportd's memory. EventSource reconnects.
 */
export const MAX_EVENT_BACKLOG = 1 << 20;

/** GET /events: the dashboard's live client list and job output (server-sent events). */
export function eventRoutes(
  app: FastifyInstance,
  o: ApiOptions,
  tokens: Tokens,
  viewer: () => Promise<(t: Tunnel) => unknown>,
): void {
  // Live updates for the dashboard: the whole client list when anything changed, at most once a second
  // (a large fleet's pings change something many times a second).
  // No HEAD: a stream has no head to give, the request would hang.
  const open = new Map<string, number>();
  let total = 0;
  app.get('/api/v1/events', { config: { tokenInQuery: true }, exposeHeadRoute: false }, (req, reply) => {
    const ip = req.ip;
    const mine = open.get(ip) ?? 0;
    if (total >= MAX_EVENT_STREAMS || mine >= MAX_EVENT_STREAMS_PER_ADDRESS) {
      const which =
        mine >= MAX_EVENT_STREAMS_PER_ADDRESS
          ? `${mine} from ${ip}, the most one address may have`
          : `${total}, the most rportd keeps`;
      return fail(
        reply,
        429,
        'too_many_event_streams',
        `too many event streams open (${which}): close a dashboard tab or another stream, then try again`,
      );
    }
    open.set(ip, mine + 1);
    total++;
    const token = presentedToken(req);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    const write = (text: string) => {
      if (res.destroyed) return;
      if (res.writableLength > MAX_EVENT_BACKLOG) {
        o.log.info(
          `event stream of ${ip} closed: it stopped reading, and ${res.writableLength} bytes of events were waiting for it`,
        );
        return void res.destroy();
      }
      res.write(text);
    };
    const send = () => {
      Promise.all([o.registry.clients(), clusterTunnels(o), viewer()]).then(
        ([clients, all, v]) => {
          write(
            `event: clients\ndata: ${JSON.stringify(clients.map((c) => clientView(c, (all.get(c.id) ?? []).map(v))))}\n\n`,
          );
        },
        (err: Error) => o.log.warn(`live update not sent: ${err.message}`),
      );
    };
    send();
    let pending: NodeJS.Timeout | undefined;
    let lastSent = Date.now();
    const off = o.registry.onChange(() => {
      if (pending) return;
      pending = setTimeout(
        () => {
          pending = undefined;
          lastSent = Date.now();
          send();
        },
        Math.max(0, lastSent + EVENTS_MIN_INTERVAL_MS - Date.now()),
      );
    });
    // Jobs: their live output as it comes (the client paces it), and a note when one changed.
    const onOutput = (out: LiveOutput) => write(`event: job-output\ndata: ${JSON.stringify(out)}\n\n`);
    const onJob = (jid: string, clientId: string | undefined) =>
      write(`event: job\ndata: ${JSON.stringify({ jid, client_id: clientId ?? null })}\n\n`);
    o.jobs.on('output', onOutput);
    o.jobs.on('changed', onJob);
    const keepAlive = setInterval(() => write(': keep-alive\n\n'), 15_000);
    // A stream opened with a token ends with it: logout, eviction or expiry.
    const unwatch = token && tokens.valid(token) ? tokens.watch(token, () => res.end()) : () => {};
    req.raw.on('close', () => {
      total--;
      const left = (open.get(ip) ?? 1) - 1;
      if (left > 0) open.set(ip, left);
      else open.delete(ip);
      unwatch();
      off();
      o.jobs.off('output', onOutput);
      o.jobs.off('changed', onJob);
      clearTimeout(pending);
      clearInterval(keepAlive);
    });
  });
}
