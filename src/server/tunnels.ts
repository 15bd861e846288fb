import { randomUUID } from 'node:crypto';
import { BlockList, createServer, isIP, type Server, type Socket } from 'node:net';
import type ssh2 from 'ssh2';
import { formatDuration } from '../shared/duration.js';
import type { TunnelPolicy } from '../config/server-config.js';
import { AddressRules, formatHostPort, isAnyAddress, isLoopback, plainAddress, parseHostPort, parseRemoteSpec, type HostPort } from '../shared/host-port.js';
import { errorMessage, type Logger } from '../log.js';
import { RemoteError, type Control } from '../transport/control-channel.js';
import { pipeSocketChannel } from '../transport/pipe.js';
import { METHOD } from '../transport/protocol.js';
import { deadline, type Deadline } from '../timeout.js';
import type { NodeRow, Store, TunnelOptionsRow, TunnelRow } from './store/index.js';

/** Bound on the client's answer to a tunnel request, and on opening one forwarded channel. */
const CLIENT_ANSWER_TIMEOUT_MS = 15_000;
/** Random ports tried from used_ports before giving up. */
const PORT_TRIES = 50;

/**
 * Where a tunnel that named no address ended up, and what that means for who may reach it: said at its
 * creation, since a new install keeps such tunnels on loopback where RPort published them on 0.0.0.0.
 */
export function defaultBindNote(t: Pick<Tunnel, 'local' | 'acl'>): string {
  const at = formatHostPort(t.local);
  const why = `the request named no address and [server] tunnel_bind_addresses starts with ${t.local.host}`;
  if (isLoopback(t.local.host)) return `listens on ${at}, on this machine only: ${why}; ask for local=0.0.0.0:PORT (with an acl) to reach it from other hosts`;
  if (isAnyAddress(t.local.host) && t.acl.length === 0) return `listens on ${at} for every network this server is on, with no acl: ${why} (RPort's default); add an acl to limit who may connect`;
  return `listens on ${at}: ${why}`;
}

/** Why a tunnel request cannot be carried out: the API answers the code with its own HTTP status. */
export type TunnelErrorCode = 'bind_address_not_allowed' | 'port_not_allowed' | 'too_many_tunnels' | 'client_not_connected' | 'bad_request'
  | 'tunnel_refused' | 'client_unavailable' | 'port_unavailable' | 'database_unavailable';

/** A tunnel request that cannot be carried out; the message is the one line a user reads. */
export class TunnelError extends Error {
  constructor(readonly code: TunnelErrorCode, message: string) {
    super(message);
  }
}

/** Opens one channel that carries one tunnel connection. */
export type Forward = (tunnelId: string, originIp: string, originPort: number, cb: (err: Error | undefined, channel: ssh2.Channel) => void) => void;

/** What the tunnel manager needs of a connected client. */
export interface ClientLink {
  control: Control;
  /** Opens the channel of one tunnel connection (rport's forwarded-tcpip under the tunnel's binding, RPort's `rport` channel). */
  forward: Forward;
}

export interface TunnelRequest {
  /** Port 0: a free one from used_ports; host "": the first of tunnel_bind_addresses. */
  local: HostPort;
  remote: HostPort;
  acl: string[];
  idleTimeoutMs: number;
}

export interface Tunnel {
  id: string;
  clientId: string;
  local: HostPort;
  remote: string;
  acl: string[];
  aclRules: AddressRules;
  idleTimeoutMs: number;
  createdBy: 'api' | 'client';
  /** For client-defined tunnels: the [client] remotes entry. */
  source: string;
  createdAt: number;
  listener: Server | undefined;
  /** The port claim of the current listener. */
  claim: string;
  sockets: Set<Socket>;
  idleTimer: Deadline | undefined;
  connections: number;
  bytesIn: number;
  bytesOut: number;
  /** The node the tunnel listens on, its address (this node's while it listens here; another's in a cluster-wide listing). */
  node?: { id: string; address: string; listening: boolean };
}

/** Where a client is, for a cluster-wide listing: this node, another (live) node, or none. */
export interface ClientWhere {
  id: string;
  nodeId: string | null;
}

function listenOn(server: Server, a: HostPort): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(a.port, a.host, () => {
      // From now on an 'error' is a failed accept(): that connection is lost, the tunnel keeps listening.
      server.off('error', onError).on('error', () => undefined);
      resolve();
    });
  });
}

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
  private readonly ports: Set<number>;
  private readonly bindAddresses = new BlockList();

  constructor(
    private readonly policy: TunnelPolicy,
    private readonly log: Logger,
    private readonly store: Pick<Store, 'tunnels'>,
    /** This node: its id claims tunnel ports across the cluster, its public host is where its tunnels listen. */
    private readonly node: { id: string; publicHost: string } = { id: '', publicHost: '' },
  ) {
    this.ports = new Set(policy.ports);
    for (const a of policy.bindAddresses) this.bindAddresses.addAddress(a, isIP(a) === 6 ? 'ipv6' : 'ipv4');
  }

  /**
   * Tunnels outlive restarts of the server too: they listen again when their client connects, if the
   * configuration still permits them. A client's rows are read again when it connects (it may come from
   * another node of the cluster, which changed them).
   */
  async load(): Promise<void> {
    for (const row of await this.store.tunnels.tunnels()) await this.restore(row);
  }

  private async reload(clientId: string): Promise<void> {
    const rows = await this.store.tunnels.tunnelsOf(clientId);
    const mine = this.tunnelsOf(clientId);
    const ids = new Set(rows.map((r) => r.id));
    for (const t of [...mine.values()]) {
      if (!ids.has(t.id)) {
        this.deactivate(t);
        mine.delete(t.id);
      }
    }
    for (const row of rows) if (!mine.has(row.id)) await this.restore(row);
  }

  private async restore(row: TunnelRow): Promise<void> {
    const what = `stored tunnel ${row.id} of client ${row.client_id} (${formatHostPort({ host: row.local_host, port: row.local_port })} -> ${row.remote})`;
    try {
      const t = this.fromRow(row);
      const refusal = this.refusal(t);
      if (refusal) throw new Error(refusal.message);
      this.tunnelsOf(row.client_id).set(t.id, t);
    } catch (err) {
      this.log.warn(`${what} not restored: ${errorMessage(err)}; deleted`);
      await this.store.tunnels.deleteTunnel(row.id);
    }
  }

  private fromRow(row: TunnelRow): Tunnel {
    const remote = parseHostPort(row.remote, '');
    if (!remote) throw new Error(`its target "${row.remote}" is not host:port`);
    const t = this.newTunnel(row.client_id, { local: { host: row.local_host, port: row.local_port }, remote, acl: JSON.parse(row.acl), idleTimeoutMs: row.idle_timeout_ms }, row.created_by, row.source);
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

  /** A tunnel's API options: scheme, lport_random, auto-close. */
  options(): Promise<Array<TunnelOptionsRow & { client_id: string }>> {
    return this.store.tunnels.tunnelOptions();
  }

  saveOptions(o: TunnelOptionsRow): Promise<void> {
    return this.store.tunnels.saveTunnelOptions(o);
  }

  /** Why the configuration does not permit this tunnel, as the API answers it; undefined if it does. */
  private refusal(t: Tunnel): TunnelError | undefined {
    const p = this.policy;
    if (!isIP(t.local.host) || !this.bindAddresses.check(t.local.host, isIP(t.local.host) === 6 ? 'ipv6' : 'ipv4')) {
      return new TunnelError('bind_address_not_allowed', `bind address ${t.local.host} is not in [server] tunnel_bind_addresses (${p.bindAddresses.join(', ')})`);
    }
    if (t.local.port && !this.ports.has(t.local.port)) {
      return new TunnelError('port_not_allowed', `port ${t.local.port} is not in [server] used_ports (${p.usedPorts}) minus excluded_ports (${p.excludedPorts})`);
    }
    const count = (this.byClient.get(t.clientId)?.size ?? 0) + (this.pending.get(t.clientId) ?? 0);
    if (count >= p.maxPerClient) {
      return new TunnelError('too_many_tunnels', `client ${t.clientId} has ${count} tunnels, the most [server] max_tunnels_per_client allows`);
    }
    return undefined;
  }

  /** Writes the tunnel as it is now (its port once chosen). */
  private save(t: Tunnel): Promise<void> {
    return this.store.tunnels.saveTunnel({
      id: t.id, client_id: t.clientId, local_host: t.local.host, local_port: t.local.port, remote: t.remote, acl: JSON.stringify(t.acl),
      idle_timeout_ms: t.idleTimeoutMs, created_by: t.createdBy, source: t.source, created_at: t.createdAt,
    });
  }

  /** A client removed from the registry: its tunnels go with it. */
  forget(clientId: string): void {
    for (const t of this.list(clientId)) this.deactivate(t);
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
      this.log.warn(`client ${clientId}: its tunnels could not be read from the registry database (${errorMessage(err)}): those known here listen again`);
    }
    if (this.links.get(clientId) !== link) return; // it went, or connected again, meanwhile
    const tunnels = this.tunnelsOf(clientId);
    for (const t of [...tunnels.values()]) {
      if (t.createdBy === 'client' && !remotes.includes(t.source)) {
        tunnels.delete(t.id);
        await this.store.tunnels.deleteTunnel(t.id).catch((err) => this.log.warn(`tunnel ${t.id}: not deleted from the registry database: ${errorMessage(err)}`));
      }
    }
    for (const r of remotes) {
      const spec = parseRemoteSpec(r);
      if (!spec) {
        this.log.warn(`client ${clientId}: ignoring [client] remotes entry "${r}": not a tunnel`);
        continue;
      }
      if (![...tunnels.values()].some((t) => t.source === r)) {
        const t = this.newTunnel(clientId, { local: spec.local, remote: spec.remote, acl: [], idleTimeoutMs: 0 }, 'client', r);
        const refusal = this.refusal(t);
        if (refusal) {
          this.log.warn(`client ${clientId}: [client] remotes entry "${r}" refused: ${refusal.message}`);
          continue;
        }
        tunnels.set(t.id, t);
        await this.save(t).catch((err) => this.log.warn(`tunnel ${t.id}: not saved in the registry database: ${errorMessage(err)}`));
      }
    }
    for (const t of tunnels.values()) {
      try {
        await this.activate(t, link);
      } catch (err) {
        this.log.error(`client ${clientId}: tunnel ${formatHostPort(t.local)} -> ${t.remote} not restored: ${errorMessage(err)}`);
      }
    }
  }

  /** A client went: close its listeners (the ports are free at once) and its open connections. */
  detach(clientId: string, link: ClientLink): void {
    if (this.links.get(clientId) !== link) return; // a newer connection of the same client took over
    this.links.delete(clientId);
    for (const t of this.list(clientId)) this.deactivate(t);
  }

  async create(clientId: string, req: TunnelRequest): Promise<Tunnel> {
    const link = this.links.get(clientId);
    if (!link) throw new TunnelError('client_not_connected', `client ${clientId} is not connected: tunnels can be created only to connected clients`);
    const t = this.newTunnel(clientId, req, 'api', '');
    const refusal = this.refusal(t);
    if (refusal) throw refusal;
    this.pending.set(clientId, (this.pending.get(clientId) ?? 0) + 1);
    try {
      await this.activate(t, link);
      try {
        await this.save(t);
      } catch (err) {
        this.deactivate(t); // an answered error leaves no port listening
        throw err;
      }
    } finally {
      const n = this.pending.get(clientId)! - 1;
      if (n > 0) this.pending.set(clientId, n);
      else this.pending.delete(clientId);
    }
    this.tunnelsOf(clientId).set(t.id, t);
    const line = `tunnel ${t.id}: ${formatHostPort(t.local)} -> client ${clientId} -> ${t.remote}`;
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
    this.deactivate(t);
    const link = this.links.get(clientId);
    link?.control.request(METHOD.tunnelClose, { id: tunnelId }, CLIENT_ANSWER_TIMEOUT_MS).catch(() => undefined);
    this.log.info(`tunnel ${tunnelId} of client ${clientId} deleted`);
    return true;
  }

  closeAll(): void {
    for (const tunnels of this.byClient.values()) for (const t of tunnels.values()) this.deactivate(t);
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
      id: randomUUID(), clientId, local: { host: req.local.host || this.policy.bindAddresses[0]!, port: req.local.port }, remote: formatHostPort(req.remote), acl: req.acl, aclRules,
      idleTimeoutMs: req.idleTimeoutMs, createdBy, source, createdAt: Date.now(), listener: undefined, claim: '', sockets: new Set(),
      idleTimer: undefined, connections: 0, bytesIn: 0, bytesOut: 0,
    };
  }

  /** The client agrees (tunnel_allowed) and registers the binding, then the server listens. */
  private async activate(t: Tunnel, link: ClientLink): Promise<void> {
    this.deactivate(t); // a listener left from the client's previous connection
    try {
      await link.control.request(METHOD.tunnelOpen, { id: t.id, remote: t.remote }, CLIENT_ANSWER_TIMEOUT_MS);
    } catch (err) {
      if (err instanceof RemoteError) throw new TunnelError('tunnel_refused', `client ${t.clientId} refused: ${err.message}`);
      throw new TunnelError('client_unavailable', `client ${t.clientId} did not confirm the tunnel: ${errorMessage(err)}`);
    }
    t.listener = await this.listen(t);
    t.node = { id: this.node.id, address: this.node.publicHost, listening: true };
    try {
      if (this.links.get(t.clientId) !== link) throw new TunnelError('client_unavailable', `client ${t.clientId} went while the tunnel was being opened`);
      // A tunnel already in the registry keeps the port it got (a new API tunnel is saved by create()).
      if (t.createdBy === 'client' || this.tunnelsOf(t.clientId).has(t.id)) await this.save(t);
    } catch (err) {
      this.deactivate(t);
      throw err;
    }
    this.armIdle(t);
  }

  private deactivate(t: Tunnel): void {
    t.idleTimer?.cancel();
    if (t.listener) {
      t.listener.close();
      this.release(t.local.port, t.claim);
    }
    t.listener = undefined;
    t.node = undefined;
    // The tunnel's end cuts its open connections short: a reset, not a clean end.
    for (const s of t.sockets) s.resetAndDestroy();
  }

  /** Frees a port claim; one that fails (the database is away) is taken back by its tunnel or freed when this node starts again. */
  private release(port: number, claim: string): void {
    this.store.tunnels.releasePort(port, claim).catch((err) => this.log.debug(`port ${port}: claim not released: ${errorMessage(err)}`));
  }

  /** The port is claimed in the store (unique across the cluster) before listening on it. */
  private async claim(port: number, t: Tunnel): Promise<boolean> {
    try {
      t.claim = randomUUID();
      return await this.store.tunnels.claimPort(port, t.id, this.node.id, t.claim);
    } catch (err) {
      throw new TunnelError('database_unavailable', `port ${port} cannot be claimed: the registry database is out of reach (${errorMessage(err)}); try again when it is back`);
    }
  }

  private async listen(t: Tunnel): Promise<Server> {
    const inUse = new Set([...this.byClient.values()].flatMap((m) => [...m.values()].filter((x) => x.listener).map((x) => x.local.port)));
    const free = this.policy.ports.filter((p) => !inUse.has(p));
    const candidates = t.local.port ? [t.local.port] : Array.from({ length: Math.min(PORT_TRIES, free.length) }, () => free[Math.floor(Math.random() * free.length)]!);
    for (const port of candidates) {
      // allowHalfOpen: a side that finished sending (FIN) may still receive the answer, as over plain TCP.
      if (!(await this.claim(port, t))) {
        if (t.local.port) throw new TunnelError('port_unavailable', `cannot listen on ${formatHostPort({ host: t.local.host, port })}: another tunnel of the cluster holds the port`);
        continue;
      }
      const server = createServer({ noDelay: true, allowHalfOpen: true }, (sock) => this.carry(t, sock));
      try {
        await listenOn(server, { host: t.local.host, port });
        t.local.port = port;
        return server;
      } catch (err) {
        this.release(port, t.claim);
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EADDRINUSE' || t.local.port) {
          throw new TunnelError('port_unavailable', `cannot listen on ${formatHostPort({ host: t.local.host, port })}: ${code === 'EADDRINUSE' ? 'the port is in use' : code ?? errorMessage(err)}`);
        }
      }
    }
    throw new TunnelError('port_unavailable', 'no free port left in [server] used_ports');
  }

  /** One TCP connection to the tunnel's port: one forwarded-tcpip channel to the client, piped both ways. */
  private carry(t: Tunnel, sock: Socket): void {
    const ip = plainAddress(sock.remoteAddress);
    if (!t.aclRules.allows(ip)) {
      this.log.warn(`tunnel ${t.id}: refused a connection from ${ip}: not in its acl`);
      sock.destroy();
      return;
    }
    const link = this.links.get(t.clientId);
    if (!link) return void sock.destroy();
    t.sockets.add(sock);
    t.connections++;
    t.idleTimer?.cancel();
    sock.on('close', () => {
      t.sockets.delete(sock);
      this.armIdle(t);
    });
    sock.on('error', () => sock.destroy());
    sock.pause();
    const answer = deadline(CLIENT_ANSWER_TIMEOUT_MS, 'forwarded channel', () => sock.resetAndDestroy());
    link.forward(t.id, ip, sock.remotePort ?? 0, (err, channel) => {
      answer.cancel();
      if (err) {
        this.log.warn(`tunnel ${t.id}: client ${t.clientId} could not reach ${t.remote} for ${ip}: ${errorMessage(err)}`);
        return void sock.resetAndDestroy(); // as the target's refusal would be
      }
      if (sock.destroyed) return void channel.close();
      sock.on('data', (b: Buffer) => (t.bytesIn += b.length));
      channel.on('data', (b: Buffer) => (t.bytesOut += b.length));
      pipeSocketChannel(sock, channel);
    });
  }

  /** An idle_timeout tunnel with no connections for that long is deleted. */
  private armIdle(t: Tunnel): void {
    if (t.idleTimeoutMs <= 0 || t.sockets.size > 0 || !t.listener) return;
    t.idleTimer?.cancel();
    t.idleTimer = deadline(t.idleTimeoutMs, `tunnel ${t.id} idle`, () => {
      this.log.info(`tunnel ${t.id} idle for ${formatDuration(t.idleTimeoutMs)}: deleting it`);
      this.delete(t.clientId, t.id).catch((err) => this.log.warn(`tunnel ${t.id}: not deleted: ${errorMessage(err)}`));
    }, { unref: true });
  }
}
