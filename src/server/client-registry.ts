/* eslint-disable max-lines -- sessions in memory and rows in the store change together in each method */
import { errorMessage, type Logger } from '../log.js';
import type { ConnectRequest, WatchdogFacts } from '../transport/protocol.js';
import type { IdentityRecords } from './identity.js';
import { Refusal } from './refusal.js';
import type { ClientRow, ConnectedClient, NodeRow, Store } from './store/index.js';

/** A client as the registry knows it, connected or not: its stored row, and its session when it is connected here. */
export interface ClientRecord {
  id: string;
  row: ClientRow;
  tags: string[];
  session: ClientSession | undefined;
  /** On this node or a live peer. */
  connected: boolean;
  /** The node that holds it; null when it is disconnected. */
  nodeId: string | null;
  watchdog: WatchdogFacts | undefined;
  restarts24h: number;
}

/** A connected client as the server sees it. */
export interface ClientSession {
  sessionId: string;
  info: ConnectRequest;
  /** The SSH user (client auth id) it logged in as. */
  authId: string;
  remoteAddress: string;
  connectedAt: number;
  /** Last time anything arrived from the client. */
  lastSeenAt: number;
  lastPingAt: number | undefined;
  lastRttMs: number | undefined;
  watchdog: WatchdogFacts | undefined;
  /** Asks the client for a ping answer; resolves the round trip in ms or rejects. */
  ping(timeoutMs: number): Promise<number>;
  /** Has the client connect to a tunnel's target and hang up (RPort's check_port); rejects when it cannot. */
  probeTunnel(tunnelId: string, timeoutMs: number): Promise<void>;
  /** Has a stock RPort client check its pending OS updates now (it sends updates_status); rejects for rport's. */
  refreshUpdates(timeoutMs: number): Promise<void>;
  close(reason: string): void;
}

/** What the registry needs of the cluster: this node's id, the live nodes, and a way to reach them. */
export interface ClusterView {
  readonly nodeId: string;
  /** Live nodes other than this one, by id, as of the last heartbeat. */
  peers(): Map<string, NodeRow>;
  /**
   * A client id that a live peer holds connects here: the peer checks its session as a node checks its own
   * (same process or no answer to a ping: stale, dropped). Throws a Refusal when the old session is alive;
   * resolves when it went, or when the peer cannot be reached (it is then taken to be gone).
   */
  takeOver(node: NodeRow, info: ConnectRequest, ip: string): Promise<void>;
}

/** One node alone: no peers. */
export function soloCluster(nodeId: string): ClusterView {
  return { nodeId, peers: () => new Map(), takeOver: async () => undefined };
}

const DAY_MS = 86_400_000;
/** Pings only move last-seen times: they reach the store in one transaction this often, not one write each. */
export const SEEN_FLUSH_MS = 5_000;

/**
 * The clients: connected ones in memory by id (one session per id: a returning client replaces its stale
 * session), and every client of the cluster, connected or not, in the store. The store is private: the
 * domain methods below write it and tell the live views (changed()).
 *
 * A write that fails (the database is out of reach) does not end what is connected: the registry notes
 * that it is behind and resync() writes this node's whole state once the database answers again.
 */
export class ClientRegistry implements IdentityRecords {
  private readonly byId = new Map<string, ClientSession>();
  private readonly listeners = new Set<() => void>();
  private unsaved = new Map<string, { id: string; at: number; watchdog: string | undefined }>();
  private readonly flusher: NodeJS.Timeout;
  /** A write failed: the store is behind this node's sessions until resync(). */
  behind = false;

  constructor(
    private readonly store: Pick<Store, 'clients' | 'credentials' | 'where'>,
    readonly cluster: ClusterView,
    private readonly log: Logger,
  ) {
    this.flusher = setInterval(() => void this.flushSeen(), SEEN_FLUSH_MS);
    this.flusher.unref();
  }

  get nodeId(): string {
    return this.cluster.nodeId;
  }

  ownerOf(clientId: string): Promise<string | undefined> {
    return this.store.clients.clientOwner(clientId);
  }

  clientsOf(authId: string): Promise<string[]> {
    return this.store.clients.clientIdsOfCredential(authId);
  }

  get(id: string): ClientSession | undefined {
    return this.byId.get(id);
  }

  /** The live peer that holds a client this node does not, if the store says one does. */
  async holder(clientId: string): Promise<NodeRow | undefined> {
    if (this.byId.has(clientId)) return undefined;
    const row = await this.store.clients.client(clientId);
    return row?.connected ? this.cluster.peers().get(row.node_id) : undefined;
  }

  /** A client id held by a live peer connects here: that peer's session must be stale (see ClusterView). */
  async takeOverRemote(info: ConnectRequest, ip: string): Promise<void> {
    const node = await this.holder(info.id);
    if (node) await this.cluster.takeOver(node, info, ip);
  }

  private row(s: ClientSession): ConnectedClient {
    const i = s.info;
    return {
      id: i.id,
      name: i.name,
      tags: JSON.stringify(i.tags),
      hostname: i.hostname,
      os: i.os,
      arch: i.arch,
      version: i.version,
      address: s.remoteAddress,
      auth_id: s.authId,
      pid: i.pid,
      process_start: i.processStart,
      watchdog: s.watchdog ? JSON.stringify(s.watchdog) : null,
      node_id: this.nodeId,
      session_id: s.sessionId,
    };
  }

  /** Registers a new session, in the store first: a node that cannot write it refuses the client. */
  async set(session: ClientSession): Promise<void> {
    try {
      await this.store.clients.clientConnected(this.row(session), session.connectedAt);
    } catch (err) {
      this.failed(err);
      throw new Refusal(
        'unavailable',
        `the server's registry database (${this.store.where}) is out of reach: ${errorMessage(err)}; the client retries later`,
      );
    }
    this.byId.set(session.info.id, session);
    this.changed();
  }

  /** Removes the session only if it is still the registered one (a replaced session must not evict its successor). */
  delete(session: ClientSession): void {
    if (this.byId.get(session.info.id) !== session) return;
    this.byId.delete(session.info.id);
    this.unsaved.delete(session.info.id);
    this.store.clients
      .clientDisconnected(session.info.id, session.sessionId, Date.now())
      .catch((err) => this.failed(err));
    this.changed();
  }

  /** A ping from the client: proof of life, its round trip and its watchdog state. */
  seen(session: ClientSession, watchdog: WatchdogFacts | undefined): void {
    if (watchdog) session.watchdog = watchdog;
    const id = session.info.id;
    this.unsaved.set(id, {
      id,
      at: session.lastSeenAt,
      watchdog: watchdog ? JSON.stringify(watchdog) : this.unsaved.get(id)?.watchdog,
    });
    this.changed();
  }

  /** A stock RPort client's report of pending OS updates (checked JSON), kept for the API. */
  updatesStatus(session: ClientSession, json: string): void {
    if (this.byId.get(session.info.id) !== session) return;
    this.store.clients.setUpdatesStatus(session.info.id, json).then(
      () => this.changed(),
      (err: unknown) => this.failed(err),
    );
  }

  /** Writes the last-seen times gathered since the last flush; also at shutdown. Kept for the next try if it fails. */
  async flushSeen(): Promise<void> {
    if (this.unsaved.size === 0 || this.behind) return;
    const batch = this.unsaved;
    this.unsaved = new Map();
    try {
      await this.store.clients.clientsSeen(batch.values());
    } catch (err) {
      for (const [id, s] of batch) if (!this.unsaved.has(id) && this.byId.has(id)) this.unsaved.set(id, s);
      this.failed(err);
    }
  }

  private failed(err: unknown): void {
    if (!this.behind)
      this.log.warn(
        `registry database (${this.store.where}) write failed: ${errorMessage(err)}; connected clients and tunnels go on, the database catches up when it answers`,
      );
    this.behind = true;
  }

  /** The database answers again: this node's rows say what it holds now. */
  async resync(): Promise<void> {
    const now = Date.now();
    const live = [...this.byId.values()].map((s) => ({
      client: this.row(s),
      connectedAt: s.connectedAt,
      seenAt: s.lastSeenAt,
    }));
    await this.store.clients.resyncNode(this.nodeId, live, now);
    this.unsaved.clear();
    if (this.behind)
      this.log.info(
        `registry database (${this.store.where}) caught up: ${live.length} connected client(s) written again`,
      );
    this.behind = false;
    this.changed();
  }

  async close(): Promise<void> {
    clearInterval(this.flusher);
    await this.flushSeen().catch(() => undefined);
  }

  list(): ClientSession[] {
    return [...this.byId.values()];
  }

  get size(): number {
    return this.byId.size;
  }

  /** Called (at most once per turn of the event loop) when any client changes: for live views. */
  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private pending = false;
  changed(): void {
    if (this.pending) return;
    this.pending = true;
    setImmediate(() => {
      this.pending = false;
      for (const fn of this.listeners) fn();
    });
  }

  // --- what the API asks ---------------------------------------------------------------------------------

  /** Every client of the cluster, connected or not. */
  async clients(): Promise<ClientRecord[]> {
    const [rows, restarts] = await Promise.all([
      this.store.clients.clients(),
      this.store.clients.restartsSince(Date.now() - DAY_MS),
    ]);
    const peers = this.cluster.peers();
    return rows.map((row) => this.record(row, restarts, peers));
  }

  async client(id: string): Promise<ClientRecord | undefined> {
    const row = await this.store.clients.client(id);
    return row && this.record(row, await this.store.clients.restartsSince(Date.now() - DAY_MS), this.cluster.peers());
  }

  /** A known client's name (connected or not), undefined for an id the registry has never seen. */
  async knownName(id: string): Promise<string | undefined> {
    return this.byId.get(id)?.info.name ?? (await this.store.clients.client(id))?.name;
  }

  /** Known clients in all, and how many are connected to any node. */
  async counts(): Promise<{ known: number; connected: number }> {
    const all = await this.clients();
    return { known: all.length, connected: all.filter((c) => c.connected).length };
  }

  /** Forgets a disconnected client with its tunnels; the caller checked it is not connected. */
  async deleteClient(id: string): Promise<void> {
    await this.store.clients.deleteClient(id);
    this.changed();
  }

  credentials(): Promise<Array<{ id: string; password_hash: string; created_at: number }>> {
    return this.store.credentials.credentials();
  }

  async hasCredential(id: string): Promise<boolean> {
    return (await this.store.credentials.credential(id)) !== undefined;
  }

  addCredential(id: string, hash: string): Promise<boolean> {
    return this.store.credentials.addCredential(id, hash, Date.now());
  }

  deleteCredential(id: string): Promise<boolean> {
    return this.store.credentials.deleteCredential(id);
  }

  private record(row: ClientRow, restarts: Map<string, number>, peers: Map<string, NodeRow>): ClientRecord {
    const session = this.byId.get(row.id);
    // Connected elsewhere: only while the node that holds it is alive (a dead node's rows are released soon).
    const remote = !session && !!row.connected && peers.has(row.node_id);
    return {
      id: row.id,
      row,
      tags: JSON.parse(row.tags) as string[],
      session,
      connected: !!session || remote,
      nodeId: session ? this.nodeId : remote ? row.node_id : null,
      watchdog: session?.watchdog ?? (row.watchdog ? (JSON.parse(row.watchdog) as WatchdogFacts) : undefined),
      restarts24h: restarts.get(row.id) ?? 0,
    };
  }
}
