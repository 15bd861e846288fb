import type { Cluster } from '../cluster/cluster.js';
import type { ApiTls } from '../config/tls-files.js';
import type { Logger } from '../log.js';
import type { ClientRegistry } from '../server/client-registry.js';
import type { Credentials } from '../server/credentials.js';
import type { JobService } from '../server/jobs/job-service.js';
import type { LoginThrottle } from '../server/login-throttle.js';
import type { Metrics } from '../server/metrics.js';
import type { Tunnel, TunnelManager, TunnelOptions } from '../server/tunnels/index.js';

export type { Tunnel };
import { tunnelView } from './tunnel-view.js';

/** What the API is given: the server's parts it answers from. Every route takes it; no route imports another. */
export interface ApiOptions {
  user: string;
  password: string;
  registry: ClientRegistry;
  tunnels: TunnelManager;
  credentials: Credentials;
  /** Remote commands and scripts. */
  jobs: JobService;
  metrics: Metrics;
  fingerprint: string;
  startedAt: number;
  /** Failed API logins, counted like the client listener's. */
  throttle: LoginThrottle;
  log: Logger;
  /** How often repeated failure lines are summed up (default: a minute). */
  logIntervalMs?: number;
  /** [api] max_token_lifetime: no bearer token lives longer (default 90 days). */
  maxTokenLifetimeMs?: number;
  /** The cluster this node is part of: node-to-node calls, forwarding, /status. */
  cluster?: Cluster;
  /** [api] cert_file, key_file and tls_min: HTTPS only, with HSTS. */
  tls?: ApiTls;
}

/** A function that shows tunnels as the API does, with their options read once for the whole answer. */
export function tunnelViewer(options: TunnelOptions): () => Promise<(t: Tunnel) => ReturnType<typeof tunnelView>> {
  return async () => {
    const all = await options.all();
    return (t) => tunnelView(t, all.get(t.id));
  };
}

/** Every tunnel of the cluster by client id, with the node each listens on. */
export async function clusterTunnels(o: ApiOptions): Promise<Map<string, Tunnel[]>> {
  return o.tunnels.listing(await o.registry.clients(), o.registry.cluster.peers());
}
