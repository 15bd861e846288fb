import { request, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { createApi } from '../../src/api/api-server.js';
import { Logger, LogSink, type Level } from '../../src/log.js';
import { ClientRegistry, soloCluster } from '../../src/server/client-registry.js';
import { Credentials } from '../../src/server/credentials.js';
import { JobService } from '../../src/server/jobs/job-service.js';
import { LoginThrottle } from '../../src/server/login-throttle.js';
import { Metrics } from '../../src/server/metrics.js';
import { SqliteDb } from '../../src/server/db/sqlite.js';
import { Store } from '../../src/server/store/index.js';
import { TunnelManager } from '../../src/server/tunnels/index.js';
import { API_AUTH } from '../../harness/procs.js';

const [user, password] = API_AUTH.split(':') as [string, string];

/**
 * The API app in the test's own process, on a real store in `dir`, not yet listening: for tests that walk
 * its route table or drive it fast. Logins never turn into bans (max_failed_login 0). Closing the app
 * closes its store.
 */
export function apiApp(
  dir: string,
  o: { logLevel?: Level; logIntervalMs?: number } = {},
): { app: FastifyInstance; logFile: string } {
  const logFile = join(dir, 'rportd.log');
  const log = new Logger(LogSink.file(logFile), o.logLevel ?? 'warn', 'api');
  const db = new SqliteDb(join(dir, 'data'));
  const store = new Store(db);
  // SQLite runs its operations in order: every query waits for the migration.
  void store.migrate();
  const registry = new ClientRegistry(store, soloCluster('test-node'), log);
  const tunnels = new TunnelManager(
    { ports: [], usedPorts: '', excludedPorts: '', bindAddresses: ['127.0.0.1'], maxPerClient: 1 },
    log,
    store,
  );
  const credentials = Credentials.load('client1:s3cret', '');
  credentials.useStore(store.credentials);
  const app = createApi({
    user,
    password,
    registry,
    tunnels,
    credentials,
    jobs: new JobService(store.jobs, registry, log),
    metrics: new Metrics(registry, tunnels),
    fingerprint: 'SHA256:test',
    startedAt: Date.now(),
    throttle: new LoginThrottle(0, 3600_000),
    log,
    logIntervalMs: o.logIntervalMs,
  });
  app.addHook('onClose', async () => {
    await registry.close();
    await store.close();
  });
  return { app, logFile };
}

/**
 * One raw HTTP request to the API on 127.0.0.1 (no client-side normalisation of the path or headers), for
 * attacks and fuzzing. The body of an answer that `cut` picks (an event stream, a success) is not read:
 * the connection is cut at its head, since such a stream never ends.
 */
export function rawRequest(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string>,
  body = '',
  cut: (res: IncomingMessage) => boolean = () => false,
): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        agent: false,
        headers: { connection: 'close', ...headers },
        timeout: 10_000,
      },
      (res) => {
        if (cut(res)) {
          resolve({ status: res.statusCode!, headers: res.headers, body: '' });
          req.destroy();
          return;
        }
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer within 10s')));
    req.on('error', (err) => reject(new Error(`${method} ${path}: ${err.message}`)));
    req.end(body);
  });
}
