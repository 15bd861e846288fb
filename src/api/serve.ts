import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { ServerConfig } from '../config/server-config.js';
import type { Logger } from '../log.js';
import type { Rportd } from '../server/rportd.js';
import { listen } from '../shared/listen.js';
import { createApi } from './api-server.js';

/** The API on [api] address, given the server's parts; undefined when no address is set. */
export async function startApi(c: ServerConfig['api'], server: Rportd, log: Logger): Promise<{ app: FastifyInstance; address: AddressInfo } | undefined> {
  if (!c.address) return undefined;
  const app = createApi({
    user: c.user, password: c.password, registry: server.registry, tunnels: server.tunnels, tunnelOptions: server.tunnelOptions, credentials: server.credentials, jobs: server.jobs, cluster: server.cluster,
    metrics: server.metrics, fingerprint: server.hostKey.fingerprint, startedAt: Date.now(), throttle: server.apiThrottle, log, maxTokenLifetimeMs: c.maxTokenLifetimeMs,
  });
  await app.ready();
  const address = await listen(app.server, c.address.host, c.address.port, 'the API ([api] address)');
  if (!c.user) log.warn(`the API on ${c.address.host}:${address.port} has no [api] auth: anyone on this machine can use it`);
  return { app, address };
}

