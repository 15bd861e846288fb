import type { ConnectRequest } from '../transport/protocol.js';

/** A connected client as the server sees it. */
export interface ClientSession {
  sessionId: string;
  info: ConnectRequest;
  remoteAddress: string;
  connectedAt: number;
  /** Last time anything arrived from the client. */
  lastSeenAt: number;
  lastPingAt: number | undefined;
  lastRttMs: number | undefined;
  /** Asks the client for a ping answer; resolves the round trip in ms or rejects. */
  ping(timeoutMs: number): Promise<number>;
  close(reason: string): void;
}

/** The connected clients by id. One session per id: a returning client replaces its stale session. */
export class ClientRegistry {
  private readonly byId = new Map<string, ClientSession>();

  get(id: string): ClientSession | undefined {
    return this.byId.get(id);
  }

  set(session: ClientSession): void {
    this.byId.set(session.info.id, session);
  }

  /** Removes the session only if it is still the registered one (a replaced session must not evict its successor). */
  delete(session: ClientSession): void {
    if (this.byId.get(session.info.id) === session) this.byId.delete(session.info.id);
  }

  list(): ClientSession[] {
    return [...this.byId.values()];
  }

  get size(): number {
    return this.byId.size;
  }
}

export function describeSession(s: ClientSession) {
  const i = s.info;
  return {
    id: i.id,
    name: i.name,
    tags: i.tags,
    hostname: i.hostname,
    os: i.os,
    arch: i.arch,
    version: i.version,
    pid: i.pid,
    process_start: new Date(i.processStart).toISOString(),
    address: s.remoteAddress,
    session_id: s.sessionId,
    connected_since: new Date(s.connectedAt).toISOString(),
    last_seen: new Date(s.lastSeenAt).toISOString(),
    last_ping: s.lastPingAt ? new Date(s.lastPingAt).toISOString() : null,
    last_ping_rtt_ms: s.lastRttMs ?? null,
  };
}
