/* eslint-disable max-lines -- a client's tunnels, from request to close: every path goes through its one map of live tunnels */
import { randomUUID } from 'node:crypto';
import type { TunnelPolicy } from '../../config/server-config.js';
import { errorMessage, type Logger } from '../../log.js';
import { AddressRules, formatHostPort, isAnyAddress, parseRemoteSpec } from '../../shared/host-port.js';
import { RemoteError } from '../../transport/control-channel.js';
import { METHOD } from '../../transport/protocol.js';
import type { NodeRow, Store } from '../store/index.js';
import type { TunnelRow } from '../store/tunnels.js';
import { CHANNEL_OPEN_TIMEOUT_MS, TunnelListeners } from './listener.js';
import { TunnelOptions } from './options.js';
import { defaultBindNote, TunnelRules } from './policy.js';
import { describeRow, rowRequest, tunnelRow } from './records.js';
import { TunnelTimers } from './timers.js';
import { TunnelError, type ClientLink, type ClientWhere, type Tunnel, type TunnelRequest } from './tunnel.js';

/** Bound on the client's answer to a tunnel request. */
const CLIENT_ANSWER_TIMEOUT_MS = CHANNEL_OPEN_TIMEOUT_MS;

/**
 * Tunnels: a port on the server whose connections are carried, one SSH channel each, to a target the
 * client dials. A client's tunnels are remembered across reconnects and listen again on the same ports;
 * when the client goes, its ports are released at once and its open connections end.
 */
export class TunnelManager {
  private readonly byClient = new Map<string, Map<string, Tunnel>>();
  private readonly links = new Map<string, ClientLink>();
  /** Tunnels being created, per client: they count against max_tunnels_per_client before they exist. */
  private readonly pending = new Map<string, number>();
  private readonly rules: TunnelRules;
  private readonly timers: TunnelTimers;
  private readonly listeners: TunnelListeners;
  /** API tunnels' options (scheme, lport_random, auto-close). */
  readonly options: TunnelOptions;

  constructor(
    policy: TunnelPolicy,
    private readonly log: Logger,
    private readonly store: Pick<Store, 'tunnels'>,
    /** This node: its id claims tunnel ports across the cluster, its public host is where its tunnels listen. */
    private readonly node: { id: string; publicHost: string } = { id: '', publicHost: '' },
    /** A tunnel ended on its own (idle, auto-close): for the live views. */
    private readonly ended: () => void = () => undefined,
  ) {
    this.rules = new TunnelRules(policy);
    this.timers = new TunnelTimers((clientId, tunnelId) => this.expire(clientId, tunnelId), log);
    this.listeners = new TunnelListeners(
      store.tunnels,
      this.node.id,
      this.timers,
      (clientId) => this.links.get(clientId),
      log,
    );
    this.options = new TunnelOptions(store.tunnels, this.timers);
  }

  /**
   * Tunnels outlive restarts of the server too: they listen again when their client connects, if the
   * configuration still permits them, and their auto-close timers run again. A client's rows are read
   * again when it connects (it may come from another node of the cluster, which changed them).
   */
  async load(): Promise<void> {
    for (const row of await this.store.tunnels.tunnels()) await this.restore(row);
    await this.options.init();
  }

  private async reload(clientId: string): Promise<void> {
    const rows = await this.store.tunnels.tunnelsOf(clientId);
    const mine = this.tunnelsOf(clientId);
    const ids = new Set(rows.map((r) => r.id));
    for (const t of [...mine.values()]) {
      if (!ids.has(t.id)) {
        this.listeners.close(t);
        mine.delete(t.id);
      }
    }
    for (const row of rows) if (!mine.has(row.id)) await this.restore(row);
  }

  private async restore(row: TunnelRow): Promise<void> {
    try {
      const t = this.fromRow(row);
      const refusal = this.refusal(t);
      if (refusal) throw new Error(refusal.message);
      this.tunnelsOf(row.client_id).set(t.id, t);
    } catch (err) {
      this.log.warn(`${describeRow(row)} not restored: ${errorMessage(err)}; deleted`);
      await this.store.tunnels.deleteTunnel(row.id);
    }
  }

  private fromRow(row: TunnelRow): Tunnel {
    const t = this.newTunnel(row.client_id, rowRequest(row), row.created_by, row.source);
    return Object.assign(t, { id: row.id, createdAt: row.created_at });
  }

  /**
   * Every tunnel of the cluster by client id, for the API: this node's own as they are, those of clients
   * held by other nodes (and of disconnected clients) as the store has them.
   */
  async listing(clients: ClientWhere[], peers: Map<string, NodeRow>): Promise<Map<string, Tunnel[]>> {
    const where = new Map(clients.map((c) => [c.id, c.nodeId]));
    const out = new Map<string, Tunnel[]>();
    for (const row of await this.store.tunnels.tunnels()) {
      const nodeId = where.get(row.client_id) ?? null;
      let t = this.links.has(row.client_id) ? this.byClient.get(row.client_id)?.get(row.id) : undefined;
      if (!t) {
        try {
          t = this.fromRow(row);
        } catch {
          continue; // a row this node cannot read is shown by the node that holds its client
        }
        const peer = nodeId ? peers.get(nodeId) : undefined;
        if (peer) t.node = { id: peer.id, address: peer.public_host, listening: true };
      }
      let list = out.get(row.client_id);
      if (!list) out.set(row.client_id, (list = []));
      list.push(t);
    }
    return out;
  }

  /** Why the configuration does not permit this tunnel, as the API answers it; undefined if it does. */
  private refusal(t: Tunnel): TunnelError | undefined {
    const count = (this.byClient.get(t.clientId)?.size ?? 0) + (this.pending.get(t.clientId) ?? 0);
    return this.rules.refusal(t.clientId, t.local, count);
  }

  /** Writes the tunnel as it is now (its port once chosen). */
  private save(t: Tunnel): Promise<void> {
    return this.store.tunnels.saveTunnel(tunnelRow(t));
  }

  /** A client removed from the registry: its tunnels go with it. */
  forget(clientId: string): void {
    for (const t of this.list(clientId)) {
      this.listeners.close(t);
      this.timers.forget(t.id);
    }
    this.byClient.delete(clientId);
  }

  all(): Tunnel[] {
    return [...this.byClient.values()].flatMap((m) => [...m.values()]);
  }

  list(clientId: string): Tunnel[] {
    return [...(this.byClient.get(clientId)?.values() ?? [])];
  }

  /** A client connected: its own [client] remotes replace the previous ones, then every tunnel listens again. */
  async attach(clientId: string, link: ClientLink, remotes: string[]): Promise<void> {
    this.links.set(clientId, link);
    try {
      await this.reload(clientId);
    } catch (err) {
      this.log.warn(
        `client ${clientId}: its tunnels could not be read from the registry database (${errorMessage(err)}): those known here listen again`,
      );
    }
    if (this.links.get(clientId) !== link) return; // it went, or connected again, meanwhile
    const tunnels = this.tunnelsOf(clientId);
    for (const t of [...tunnels.values()]) {
      if (t.createdBy === 'client' && !remotes.includes(t.source)) {
        tunnels.delete(t.id);
        await this.store.tunnels
          .deleteTunnel(t.id)
          .catch((err) =>
            this.log.warn(`tunnel ${t.id}: not deleted from the registry database: ${errorMessage(err)}`),
          );
      }
    }
    for (const r of remotes) {
      const spec = parseRemoteSpec(r);
      if (!spec) {
        this.log.warn(`client ${clientId}: ignoring [client] remotes entry "${r}": not a tunnel`);
        continue;
      }
      if (![...tunnels.values()].some((t) => t.source === r)) {
        const t = this.newTunnel(
          clientId,
          { local: spec.local, remote: spec.remote, acl: [], idleTimeoutMs: 0 },
          'client',
          r,
        );
        const refusal = this.refusal(t);
        if (refusal) {
          this.log.warn(`client ${clientId}: [client] remotes entry "${r}" refused: ${refusal.message}`);
          continue;
        }
        tunnels.set(t.id, t);
        await this.save(t).catch((err) =>
          this.log.warn(`tunnel ${t.id}: not saved in the registry database: ${errorMessage(err)}`),
        );
      }
    }
    for (const t of tunnels.values()) {
      try {
        await this.activate(t, link);
      } catch (err) {
        this.log.error(
          `client ${clientId}: tunnel ${formatHostPort(t.local)} -> ${formatHostPort(t.remote)} not restored: ${errorMessage(err)}`,
        );
      }
    }
  }

  /** A client went: close its listeners (the ports are free at once) and its open connections. */
  detach(clientId: string, link: ClientLink): void {
    if (this.links.get(clientId) !== link) return; // a newer connection of the same client took over
    this.links.delete(clientId);
    for (const t of this.list(clientId)) this.listeners.close(t);
  }

  async create(clientId: string, req: TunnelRequest): Promise<Tunnel> {
    const link = this.links.get(clientId);
    if (!link)
      throw new TunnelError(
        'client_not_connected',
        `client ${clientId} is not connected: tunnels can be created only to connected clients`,
      );
    const t = this.newTunnel(clientId, req, 'api', '');
    const refusal = this.refusal(t);
    if (refusal) throw refusal;
    this.pending.set(clientId, (this.pending.get(clientId) ?? 0) + 1);
    try {
      await this.activate(t, link);
      try {
        await this.save(t);
      } catch (err) {
        this.listeners.close(t); // an answered error leaves no port listening
        throw err;
      }
    } finally {
      const n = this.pending.get(clientId)! - 1;
      if (n > 0) this.pending.set(clientId, n);
      else this.pending.delete(clientId);
    }
    this.tunnelsOf(clientId).set(t.id, t);
    const line = `tunnel ${t.id}: ${formatHostPort(t.local)} -> client ${clientId} -> ${formatHostPort(t.remote)}`;
    if (req.local.host) this.log.info(line);
    else if (isAnyAddress(t.local.host) && t.acl.length === 0) this.log.warn(`${line}: ${defaultBindNote(t)}`);
    else this.log.info(`${line}: ${defaultBindNote(t)}`);
    return t;
  }

  async delete(clientId: string, tunnelId: string): Promise<boolean> {
    const t = this.byClient.get(clientId)?.get(tunnelId);
    if (!t) return false;
    await this.store.tunnels.deleteTunnel(tunnelId);
    this.byClient.get(clientId)!.delete(tunnelId);
    this.listeners.close(t);
    this.timers.forget(tunnelId);
    const link = this.links.get(clientId);
    link?.control.request(METHOD.tunnelClose, { id: tunnelId }, CLIENT_ANSWER_TIMEOUT_MS).catch(() => undefined);
    this.log.info(`tunnel ${tunnelId} of client ${clientId} deleted`);
    return true;
  }

  /** A tunnel's time ran out (idle, auto-close): deleted, and the live views told. */
  private async expire(clientId: string, tunnelId: string): Promise<boolean> {
    const gone = await this.delete(clientId, tunnelId);
    if (gone) this.ended();
    return gone;
  }

  /** The server stops: no timer ends a tunnel while it closes. */
  stopTimers(): void {
    this.timers.stop();
  }

  closeAll(): void {
    for (const tunnels of this.byClient.values()) for (const t of tunnels.values()) this.listeners.close(t);
  }

  private tunnelsOf(clientId: string): Map<string, Tunnel> {
    let m = this.byClient.get(clientId);
    if (!m) this.byClient.set(clientId, (m = new Map()));
    return m;
  }

  private newTunnel(clientId: string, req: TunnelRequest, createdBy: Tunnel['createdBy'], source: string): Tunnel {
    let aclRules: AddressRules;
    try {
      aclRules = AddressRules.parse(req.acl);
    } catch (err) {
      throw new TunnelError('bad_request', `acl ${errorMessage(err)}`);
    }
    return {
      id: randomUUID(),
      clientId,
      local: { host: req.local.host || this.rules.defaultHost, port: req.local.port },
      remote: req.remote,
      acl: req.acl,
      aclRules,
      idleTimeoutMs: req.idleTimeoutMs,
      createdBy,
      source,
      createdAt: Date.now(),
      listener: undefined,
      claim: '',
      sockets: new Set(),
      idleTimer: undefined,
      connections: 0,
      bytesIn: 0,
      bytesOut: 0,
    };
  }

  /** The client agrees (tunnel_allowed) and registers the binding, then the server listens. */
  private async activate(t: Tunnel, link: ClientLink): Promise<void> {
    this.listeners.close(t); // a listener left from the client's previous connection
    try {
      await link.control.request(
        METHOD.tunnelOpen,
        { id: t.id, remote: formatHostPort(t.remote) },
        CLIENT_ANSWER_TIMEOUT_MS,
      );
    } catch (err) {
      if (err instanceof RemoteError)
        throw new TunnelError('tunnel_refused', `client ${t.clientId} refused: ${err.message}`);
      throw new TunnelError(
        'client_unavailable',
        `client ${t.clientId} did not confirm the tunnel: ${errorMessage(err)}`,
      );
    }
    t.listener = await this.listeners.listen(t, () => this.rules.freePorts(this.listeningPorts()));
    t.node = { id: this.node.id, address: this.node.publicHost, listening: true };
    try {
      if (this.links.get(t.clientId) !== link)
        throw new TunnelError('client_unavailable', `client ${t.clientId} went while the tunnel was being opened`);
      // A tunnel already in the registry keeps the port it got (a new API tunnel is saved by create()).
      if (t.createdBy === 'client' || this.tunnelsOf(t.clientId).has(t.id)) await this.save(t);
    } catch (err) {
      this.listeners.close(t);
      throw err;
    }
    this.timers.armIdle(t);
  }

  /** The ports this node's tunnels listen on. */
  private listeningPorts(): Set<number> {
    return new Set(
      this.all()
        .filter((x) => x.listener)
        .map((x) => x.local.port),
    );
  }
}
