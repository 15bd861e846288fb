import { createServer, type RequestListener, type Server } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { ServerConfig } from '../config/server-config.js';
import { formatDuration } from '../shared/duration.js';
import { closeServer, listen } from '../shared/listen.js';
import { errorMessage, type Logger } from '../log.js';
import type { HostKey } from '../transport/host-key.js';
import { ClientListener } from './client-listener.js';
import { ClientRegistry } from './client-registry.js';
import { Credentials } from './credentials.js';
import { JobService } from './jobs/job-service.js';
import { SqliteJobStore } from './jobs/job-store.js';
import { LoginThrottle } from './login-throttle.js';
import { Metrics } from './metrics.js';
import { Store } from './store.js';
import { TunnelManager } from './tunnels.js';

/** The HTTP request that upgrades to a WebSocket must arrive whole within this after the connection. */
export const UPGRADE_HEADERS_TIMEOUT_MS = 10_000;

/**
 * The server: the client listener and the client registry with its liveness checks. Its parts (registry,
 * tunnels, credentials, metrics, throttle) are public for the API, which the process wires beside it.
 */
export class Rportd {
  readonly store: Store;
  readonly registry: ClientRegistry;
  readonly jobs: JobService;
  readonly tunnels: TunnelManager;
  readonly metrics: Metrics;
  /** One throttle for client logins and the API, its counts in the store so bans survive a restart. */
  readonly throttle: LoginThrottle;
  private readonly http: Server;
  private listener: ClientListener | undefined;
  private checker: NodeJS.Timeout | undefined;
  private purger: NodeJS.Timeout | undefined;
  private readonly checking = new Set<string>();

  constructor(
    private readonly cfg: ServerConfig,
    readonly hostKey: HostKey,
    readonly credentials: Credentials,
    private readonly log: Logger,
  ) {
    const plain: RequestListener = (_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain' }).end('rportd: connect with an rport client (WebSocket, subprotocol rport-v1)\n');
    };
    this.store = new Store(cfg.dataDir);
    this.store.markAllDisconnected(Date.now());
    credentials.useStore(this.store);
    this.registry = new ClientRegistry(this.store);
    this.jobs = new JobService(new SqliteJobStore(this.store.db), this.registry, log.child('jobs'));
    this.tunnels = new TunnelManager(cfg.tunnels, log.child('tunnels'), this.store);
    this.metrics = new Metrics(this.registry, this.tunnels);
    this.throttle = new LoginThrottle(cfg.maxFailedLogin, cfg.banTimeMs, {
      get: (k) => this.store.failedLogin(k),
      set: (k, r) => this.store.setFailedLogin(k, r),
      clear: (k) => this.store.clearFailedLogin(k),
    });
    // A peer that never finishes its HTTP request is cut off early; client_login_timeout bounds the rest.
    const limits = { headersTimeout: UPGRADE_HEADERS_TIMEOUT_MS, requestTimeout: UPGRADE_HEADERS_TIMEOUT_MS, connectionsCheckingInterval: 1000 };
    this.http = cfg.tls ? createTlsServer({ cert: cfg.tls.cert, key: cfg.tls.key, ...limits }, plain) : createServer(limits, plain);
  }

  async start(): Promise<AddressInfo> {
    const c = this.cfg;
    await this.jobs.init();
    this.listener = new ClientListener({
      hostKey: this.hostKey,
      credentials: this.credentials,
      throttle: this.throttle,
      metrics: this.metrics,
      registry: this.registry,
      log: this.log.child('clients'),
      checkTimeoutMs: c.checkTimeoutMs,
      admission: { total: c.maxUnauthenticated, perAddress: c.maxUnauthenticatedPerAddress, loginTimeoutMs: c.loginTimeoutMs },
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
    this.purger = setInterval(() => this.purge(), c.keepDisconnectedMs === undefined ? 60_000 : Math.min(60_000, c.purgeIntervalMs));
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
          this.log.warn(`client ${s.info.id} (${s.remoteAddress}) silent for ${formatDuration(now - s.lastSeenAt)} and did not answer a ping: ${errorMessage(err)}; dropping it`);
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
  private purge(): void {
    const now = Date.now();
    this.store.purgeFailedLogins(now, now - this.cfg.banTimeMs);
    if (this.cfg.keepDisconnectedMs === undefined) return;
    for (const id of this.store.purgeDisconnected(now - this.cfg.keepDisconnectedMs)) {
      this.tunnels.forget(id);
      this.log.info(`client ${id} disconnected for over keep_disconnected_clients: removed from the registry`);
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.checker);
    clearInterval(this.purger);
    this.jobs.stop();
    // The connections' close handling writes to the registry: it runs before the store closes.
    await this.listener?.closeAll();
    this.tunnels.closeAll();
    await Promise.all([closeServer(this.http), this.credentials.close()]);
    this.registry.close();
    this.store.close();
  }
}
