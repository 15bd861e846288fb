import { createServer, type RequestListener, type Server } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { createApi } from '../api/api-server.js';
import type { ServerConfig } from '../config/server-config.js';
import { formatDuration } from '../shared/duration.js';
import { formatHostPort, isAnyAddress } from '../shared/host-port.js';
import { closeServer, listen } from '../shared/listen.js';
import { errorMessage, type Logger } from '../log.js';
import type { HostKey } from '../transport/host-key.js';
import { ClientListener } from '../server/client-listener.js';
import { ClientRegistry } from '../server/client-registry.js';
import { type Credentials } from '../server/credentials.js';
import { DatabaseError, type Db } from '../server/db/db.js';
import { PostgresDb } from '../server/db/postgres.js';
import { SqliteDb } from '../server/db/sqlite.js';
import { JobService } from '../server/jobs/job-service.js';
import { LoginThrottle } from '../server/login-throttle.js';
import { Metrics } from '../server/metrics.js';
import { Store } from '../server/store/index.js';
import { storedFailures } from '../server/stored-failures.js';
import { TunnelManager } from '../server/tunnels/index.js';
import { Cluster } from '../cluster/cluster.js';
import { loadNodeId } from '../cluster/node-id.js';

/** The HTTP request that upgrades to a WebSocket must arrive whole within this after the connection. */
export const UPGRADE_HEADERS_TIMEOUT_MS = 10_000;

async function openDb(cfg: ServerConfig, log: Logger): Promise<Db> {
  const d = cfg.database;
  if (d.type === 'sqlite') return new SqliteDb(cfg.dataDir);
  return PostgresDb.open({ host: d.host, port: d.port, database: d.name, user: d.user, password: d.password }, log);
}

/**
 * The rportd process, wired in this one place: the client listener, the client registry with its liveness
 * checks, its cluster, and the API beside them. server/ never imports cluster/: the cluster is made here and
 * handed to the registry as server/'s own ClusterView. The API gets their parts once start() has opened the registry.
 */
export class Daemon {
  private store!: Store;
  cluster!: Cluster;
  registry!: ClientRegistry;
  tunnels!: TunnelManager;
  jobs!: JobService;
  metrics!: Metrics;
  /** Client logins' throttle, its counts in the store so bans survive a restart. */
  throttle!: LoginThrottle;
  /** The API's, in the same store under its own keys: API and client logins never ban each other. */
  apiThrottle!: LoginThrottle;
  private purgeFailures!: (now: number, before: number) => Promise<void>;
  private readonly http: Server;
  private listener: ClientListener | undefined;
  private checker: NodeJS.Timeout | undefined;
  private purger: NodeJS.Timeout | undefined;
  private readonly checking = new Set<string>();
  private api: FastifyInstance | undefined;

  constructor(
    private readonly cfg: ServerConfig,
    readonly hostKey: HostKey,
    readonly credentials: Credentials,
    private readonly log: Logger,
  ) {
    const plain: RequestListener = (_req, res) => {
      res
        .writeHead(426, { 'content-type': 'text/plain' })
        .end('rportd: connect with an rport client (WebSocket, subprotocol rport-v1)\n');
    };
    // A peer that never finishes its HTTP request is cut off early; client_login_timeout bounds the rest.
    const limits = {
      headersTimeout: UPGRADE_HEADERS_TIMEOUT_MS,
      requestTimeout: UPGRADE_HEADERS_TIMEOUT_MS,
      connectionsCheckingInterval: 1000,
    };
    this.http = cfg.tls
      ? createTlsServer({ cert: cfg.tls.cert, key: cfg.tls.key, ...limits }, plain)
      : createServer(limits, plain);
  }

  /** The registry in its database, joined to the cluster (a lone node on SQLite is a cluster of one). */
  private async open(): Promise<void> {
    const c = this.cfg;
    const db = await openDb(c, this.log.child('database'));
    this.store = new Store(db);
    try {
      await this.store.migrate();
    } catch (err) {
      await db.close().catch(() => undefined);
      const hint =
        c.database.type === 'postgres'
          ? ': check [database] db_host, db_name, db_user and db_password, and that the server runs'
          : '';
      const why = err instanceof DatabaseError && err.cause instanceof Error ? err.cause.message : errorMessage(err);
      throw new Error(`cannot open the registry database ${db.where}: ${why}${hint}`, { cause: err });
    }
    const nodeId = loadNodeId(c.dataDir);
    const d = c.database;
    const publicHost = c.publicHost;
    // The API where it listens; other nodes of a cluster call it at node_address.
    const api = c.api.address;
    const apiHost = d.type === 'postgres' || !api || isAnyAddress(api.host) ? publicHost : api.host;
    const apiUrl = api ? `${c.api.tls ? 'https' : 'http'}://${formatHostPort({ host: apiHost, port: api.port })}` : '';
    this.cluster = new Cluster(
      nodeId,
      this.store,
      {
        apiUrl,
        clientAddress: formatHostPort({ host: publicHost, port: c.address.port }),
        publicHost,
        allowedNodes: d.type === 'postgres' ? d.allowedNodes : undefined,
      },
      c.checkTimeoutMs,
      this.log.child('cluster'),
    );
    this.credentials.useStore(this.store.credentials);
    this.registry = new ClientRegistry(this.store, this.cluster, this.log.child('registry'));
    await this.cluster.join(this.registry);
    this.jobs = new JobService(this.store.jobs, this.registry, this.log.child('jobs'));
    await this.jobs.init();
    this.tunnels = new TunnelManager(c.tunnels, this.log.child('tunnels'), this.store, { id: nodeId, publicHost }, () =>
      this.registry.changed(),
    );
    await this.tunnels.load();
    this.metrics = new Metrics(this.registry, this.tunnels);
    this.cluster.metrics(this.metrics.registry);
    const failures = await storedFailures(this.store.failedLogins, this.log.child('database'));
    this.purgeFailures = failures.purge;
    this.throttle = new LoginThrottle(c.maxFailedLogin, c.banTimeMs, { records: failures, realm: 'clients' });
    this.apiThrottle = new LoginThrottle(c.api.maxFailedLogin, c.api.banTimeMs, { records: failures, realm: 'api' });
    this.log.info(
      `node ${nodeId}: registry in ${db.where}${d.type === 'postgres' ? `, ${this.cluster.peers().size} other live node(s)` : ''}`,
    );
  }

  async start(): Promise<AddressInfo> {
    const c = this.cfg;
    await this.open();
    this.listener = new ClientListener({
      hostKey: this.hostKey,
      credentials: this.credentials,
      throttle: this.throttle,
      metrics: this.metrics,
      registry: this.registry,
      log: this.log.child('clients'),
      checkTimeoutMs: c.checkTimeoutMs,
      admission: {
        total: c.maxUnauthenticated,
        perAddress: c.maxUnauthenticatedPerAddress,
        loginTimeoutMs: c.loginTimeoutMs,
      },
      maxAuthTries: c.maxAuthTries,
      identity: { multiuseCreds: c.multiuseCreds, equateAuthIdClientId: c.equateAuthIdClientId },
      tunnels: this.tunnels,
      jobs: this.jobs,
    });
    this.http.on('connection', (socket: Socket) => this.listener!.admit(socket));
    this.http.on('upgrade', (req, socket, head) => this.listener!.handleUpgrade(req, socket, head));
    this.http.on('clientError', (_err, socket) => socket.destroy());
    const clients = await listen(this.http, c.address.host, c.address.port, 'clients ([server] address)');
    const period = Math.min(5000, Math.max(250, c.checkIntervalMs / 4));
    this.checker = setInterval(() => this.checkSilentClients(), period);
    this.checker.unref();
    // Stale login failures go every minute; disconnected clients only with purge_disconnected_clients (RPort).
    this.purger = setInterval(
      () => void this.purge().catch((err) => this.log.warn(`purge skipped: ${errorMessage(err)}`)),
      c.keepDisconnectedMs === undefined ? 60_000 : Math.min(60_000, c.purgeIntervalMs),
    );
    this.purger.unref();
    return clients;
  }

  /** Pings clients silent for check_clients_connection_interval; drops those that do not answer in time. */
  private checkSilentClients(): void {
    const now = Date.now();
    for (const s of this.registry.list()) {
      if (now - s.lastSeenAt < this.cfg.checkIntervalMs || this.checking.has(s.sessionId)) continue;
      this.checking.add(s.sessionId);
      s.ping(this.cfg.checkTimeoutMs)
        .catch((err) => {
          this.log.warn(
            `client ${s.info.id} (${s.remoteAddress}) silent for ${formatDuration(now - s.lastSeenAt)} and did not answer a ping: ${errorMessage(err)}; dropping it`,
          );
          this.registry.delete(s);
          s.close('no answer to the liveness check');
        })
        .finally(() => this.checking.delete(s.sessionId));
    }
  }

  /**
   * Stale login failures go; with purge_disconnected_clients, clients gone for over keep_disconnected_clients
   * leave the registry too, with their tunnels.
   */
  private async purge(): Promise<void> {
    const now = Date.now();
    await this.purgeFailures(now, now - Math.max(this.cfg.banTimeMs, this.cfg.api.banTimeMs));
    if (this.cfg.keepDisconnectedMs === undefined) return;
    for (const id of await this.store.clients.purgeDisconnected(now - this.cfg.keepDisconnectedMs)) {
      this.tunnels.forget(id);
      this.log.info(`client ${id} disconnected for over keep_disconnected_clients: removed from the registry`);
    }
  }

  /** The API on [api] address, given the server's parts; undefined when no address is set. */
  async startApi(log: Logger): Promise<AddressInfo | undefined> {
    const c = this.cfg.api;
    if (!c.address) return undefined;
    const app = createApi({
      user: c.user,
      password: c.password,
      registry: this.registry,
      tunnels: this.tunnels,
      credentials: this.credentials,
      jobs: this.jobs,
      cluster: this.cluster,
      metrics: this.metrics,
      fingerprint: this.hostKey.fingerprint,
      startedAt: Date.now(),
      throttle: this.apiThrottle,
      log,
      maxTokenLifetimeMs: c.maxTokenLifetimeMs,
      tls: c.tls,
    });
    await app.ready();
    const address = await listen(app.server, c.address.host, c.address.port, 'the API ([api] address)');
    this.api = app;
    if (!c.user)
      log.warn(`the API on ${c.address.host}:${address.port} has no [api] auth: anyone on this machine can use it`);
    return address;
  }

  /** The API stops first: no request reaches a server that is closing. */
  async stop(): Promise<void> {
    if (this.api) await closeServer(this.api.server);
    clearInterval(this.checker);
    clearInterval(this.purger);
    this.jobs.stop();
    this.tunnels.stopTimers();
    // The connections' close handling writes to the registry: it runs before the store closes.
    await this.listener?.closeAll();
    this.tunnels.closeAll();
    await Promise.all([closeServer(this.http), this.credentials.close()]);
    await this.registry.close();
    // Its clients connect again to other nodes: released now, not after the dead bound.
    await this.cluster.leave();
    await this.store.nodes.releaseNode(this.cluster.nodeId, Date.now()).catch(() => undefined);
    await this.store.close();
  }
}
