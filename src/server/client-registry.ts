import type { ConnectRequest, WatchdogFacts } from '../transport/protocol.js';
import type { IdentityRecords } from './identity.js';
import type { ClientRow, Store } from './store.js';

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
  close(reason: string): void;
}

const DAY_MS = 86_400_000;
/** Pings only move last-seen times: they reach the store in one transaction this often, not one write each. */
export const SEEN_FLUSH_MS = 5_000;

/**
 * The clients: connected ones in memory by id (one session per id: a returning client replaces its stale
 * session), and every client, connected or not, in the store.
 */
export class ClientRegistry implements IdentityRecords {
  private readonly byId = new Map<string, ClientSession>();
  private readonly listeners = new Set<() => void>();
  private readonly unsaved = new Map<string, { id: string; at: number; watchdog: string | undefined }>();
  private readonly flusher: NodeJS.Timeout;

  constructor(readonly store: Store) {
    this.flusher = setInterval(() => this.flushSeen(), SEEN_FLUSH_MS);
    this.flusher.unref();
  }

  ownerOf(clientId: string): string | undefined {
    return this.store.clientOwner(clientId);
  }

  clientsOf(authId: string): string[] {
    return this.store.clientIdsOfCredential(authId);
  }

  get(id: string): ClientSession | undefined {
    return this.byId.get(id);
  }

  set(session: ClientSession): void {
    this.byId.set(session.info.id, session);
    const i = session.info;
    this.store.clientConnected({
      id: i.id, name: i.name, tags: JSON.stringify(i.tags), hostname: i.hostname, os: i.os, arch: i.arch, version: i.version,
      address: session.remoteAddress, auth_id: session.authId, pid: i.pid, process_start: i.processStart,
      watchdog: session.watchdog ? JSON.stringify(session.watchdog) : null,
    }, session.connectedAt);
    this.changed();
  }

  /** Removes the session only if it is still the registered one (a replaced session must not evict its successor). */
  delete(session: ClientSession): void {
    if (this.byId.get(session.info.id) !== session) return;
    this.byId.delete(session.info.id);
    this.unsaved.delete(session.info.id);
    this.store.clientDisconnected(session.info.id, Date.now());
    this.changed();
  }

  /** A ping from the client: proof of life, its round trip and its watchdog state. */
  seen(session: ClientSession, watchdog: WatchdogFacts | undefined): void {
    if (watchdog) session.watchdog = watchdog;
    const id = session.info.id;
    this.unsaved.set(id, { id, at: session.lastSeenAt, watchdog: watchdog ? JSON.stringify(watchdog) : this.unsaved.get(id)?.watchdog });
    this.changed();
  }

  /** Writes the last-seen times gathered since the last flush; also at shutdown. */
  flushSeen(): void {
    if (this.unsaved.size === 0) return;
    this.store.clientsSeen(this.unsaved.values());
    this.unsaved.clear();
  }

  close(): void {
    clearInterval(this.flusher);
    this.flushSeen();
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

  /** Every client the server knows, connected or not, as the API shows it. */
  describeAll(): ReturnType<ClientRegistry['describe']>[] {
    const restarts = this.store.restartsSince(Date.now() - DAY_MS);
    return this.store.clients().map((row) => this.describe(row, restarts));
  }

  describeOne(id: string): ReturnType<ClientRegistry['describe']> | undefined {
    const row = this.store.client(id);
    return row && this.describe(row, this.store.restartsSince(Date.now() - DAY_MS));
  }

  private describe(row: ClientRow, restarts: Map<string, number>) {
    const live = this.byId.get(row.id);
    const iso = (t: number | null | undefined) => (t ? new Date(t).toISOString() : null);
    const watchdog = live?.watchdog ?? (row.watchdog ? (JSON.parse(row.watchdog) as WatchdogFacts) : undefined);
    return {
      id: row.id,
      name: row.name,
      tags: JSON.parse(row.tags) as string[],
      hostname: row.hostname,
      os: row.os,
      arch: row.arch,
      version: row.version,
      pid: row.pid,
      process_start: iso(row.process_start),
      address: row.address,
      auth_id: row.auth_id,
      connected: !!live,
      session_id: live?.sessionId ?? null,
      connected_since: live ? iso(live.connectedAt) : null,
      disconnected_at: live ? null : iso(row.disconnected_at),
      last_seen: iso(live?.lastSeenAt ?? row.last_seen_at),
      last_ping: iso(live?.lastPingAt),
      last_ping_rtt_ms: live?.lastRttMs ?? null,
      watchdog: {
        integration: watchdog?.integration ?? false,
        systemd_watchdog_sec: watchdog?.systemd_watchdog_sec ?? null,
        heartbeat_budget_sec: watchdog?.heartbeat_budget_sec ?? null,
        last_state: watchdog?.last_state ?? null,
        armed: !!watchdog && (watchdog.integration || watchdog.systemd_watchdog_sec !== null),
        restarts_24h: restarts.get(row.id) ?? 0,
      },
    };
  }
}
