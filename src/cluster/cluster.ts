/* eslint-disable max-lines -- this node's membership: heartbeat, live peers, the sweep and forwarding read the same peer state */
import { randomBytes } from 'node:crypto';
import { Gauge, type Registry } from 'prom-client';
import { isIP } from 'node:net';
import { formatDuration } from '../shared/duration.js';
import type { AddressRules } from '../shared/host-port.js';
import { errorMessage, type Logger } from '../log.js';
import type { ClientRegistry, ClusterView } from '../server/client-registry.js';
import { Refusal } from '../server/refusal.js';
import type { NodeRecords, NodeRow } from '../server/store/nodes.js';
import type { ConnectRequest } from '../transport/protocol.js';
import { SIGNATURE_HEADER, Signer, type Signed } from './signature.js';

/** A node writes its heartbeat this often ... */
export const HEARTBEAT_MS = 2_000;
/** ... and is dead when the last one is older than this: its clients are released, its ports freed. */
export const DEAD_AFTER_MS = 15_000;
/** A stale-session check on another node: its ping is bounded by 5 s. */
const TAKEOVER_TIMEOUT_MS = 8_000;
/** A forwarded API call: creating a tunnel waits for the client (15 s) and check_port (15 s). */
export const FORWARD_TIMEOUT_MS = 35_000;

/** The one line of another node's API error answer, or `fallback` when the body is not one. */
export function errorTitle(body: string, fallback: string): string {
  try {
    return (JSON.parse(body) as { errors?: Array<{ title?: string }> }).errors?.[0]?.title || fallback;
  } catch {
    return fallback;
  }
}

/** The node holding a client did not answer a forwarded call (the API answers 503). */
export class NodeUnavailable extends Error {}

/**
 * Why a call to another node failed, from fetch's cause ("fetch failed" alone says nothing): a refused
 * certificate is named with its fix, anything else as the network gave it.
 */
function callFailure(err: unknown, timeoutMs: number): string {
  const cause = (err as Error).cause as NodeJS.ErrnoException | undefined;
  if (cause?.code && /CERT|SIGNATURE|ALTNAME/.test(cause.code))
    return `its TLS certificate was refused (${cause.message}): it must name the node's IP address and be signed by a CA this node trusts (the system's, or one added with NODE_EXTRA_CA_CERTS)`;
  if ((err as Error).name === 'TimeoutError') return `it did not answer within ${formatDuration(timeoutMs)}`;
  return `it did not answer: ${cause?.message || cause?.code || errorMessage(err)}`;
}

/** An API request as it is sent on to another node. */
export interface ForwardedRequest {
  method: string;
  url: string;
  body: unknown;
}

export interface NodeAddress {
  /** http://host:port of this node's API ('' without one). */
  apiUrl: string;
  clientAddress: string;
  /** Where this node's tunnels are reached. */
  publicHost: string;
  /** [database] allowed_node_addresses: the only addresses this node calls other nodes at; none without it (a lone node). */
  allowedNodes?: AddressRules;
}

/** The cluster's records and, for its status, which database holds them. */
export interface ClusterStore {
  readonly nodes: NodeRecords;
  readonly kind: string;
  readonly where: string;
}

/**
 * This node's part in a cluster of nodes sharing one database. It heart-beats its row in the nodes table,
 * knows the live peers from theirs, releases the clients of nodes that stopped heart-beating, and calls
 * peers (signed with the cluster secret, kept in the database) to take over a client or to forward an API call.
 * A lone node on SQLite runs the same code with no peers.
 */
export class Cluster implements ClusterView {
  private peerNodes = new Map<string, NodeRow>();
  private secret = '';
  private readonly signer = new Signer(() => this.secret);
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private readonly startedAt = Date.now();
  /** Whether the last heartbeat reached the database, and since when. */
  private up = true;
  private upSince = Date.now();
  private registry: ClientRegistry | undefined;

  constructor(
    readonly nodeId: string,
    private readonly store: ClusterStore,
    private readonly address: NodeAddress,
    readonly checkTimeoutMs: number,
    private readonly log: Logger,
  ) {}

  get databaseUp(): boolean {
    return this.up;
  }

  /** Joins: the secret, this node's row, its old rows released (a restarted node holds nothing yet). */
  async join(registry: ClientRegistry): Promise<void> {
    this.registry = registry;
    this.secret = await this.store.nodes.clusterSecret(randomBytes(32).toString('base64url'));
    await this.store.nodes.releaseNode(this.nodeId, Date.now());
    await this.beat();
    this.timer = setInterval(() => void this.tick(), HEARTBEAT_MS);
    this.timer.unref();
  }

  metrics(registry: Registry): void {
    const up: Gauge = new Gauge({
      name: 'rport_database_up',
      help: 'Whether the last heartbeat reached the registry database (1) or not (0)',
      registers: [registry],
      collect: () => up.set(this.up ? 1 : 0),
    });
    const nodes: Gauge = new Gauge({
      name: 'rport_cluster_nodes',
      help: 'Live nodes of the cluster, this one included',
      registers: [registry],
      collect: () => nodes.set(this.peerNodes.size + 1),
    });
  }

  private async beat(): Promise<void> {
    const now = Date.now();
    await this.store.nodes.heartbeat({
      id: this.nodeId,
      api_url: this.address.apiUrl,
      client_address: this.address.clientAddress,
      public_host: this.address.publicHost,
      started_at: this.startedAt,
      heartbeat_at: now,
    });
    const nodes = await this.store.nodes.nodes();
    this.peerNodes = new Map(
      nodes.filter((n) => n.id !== this.nodeId && n.heartbeat_at >= now - DEAD_AFTER_MS).map((n) => [n.id, n]),
    );
  }

  private tick(): Promise<void> {
    this.ticking ??= this.beatAndSweep().finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  private async beatAndSweep(): Promise<void> {
    const registry = this.registry!;
    try {
      await this.beat();
    } catch (err) {
      if (this.up)
        this.log.warn(
          `registry database out of reach: ${errorMessage(err)}; connected clients and tunnels go on, new clients are refused until it is back`,
        );
      this.up = false;
      // What changes meanwhile is written again once it answers.
      registry.behind = true;
      return;
    }
    const now = Date.now();
    if (!this.up) {
      this.log.info(`registry database reachable again after ${formatDuration(now - this.upSince)}`);
      this.up = true;
      this.upSince = now;
    }
    try {
      if (registry.behind) await registry.resync();
      // Only a node that has heart-beaten for a whole bound judges others: after an outage of the
      // database every node gets the time to write its heartbeat before anyone is declared dead.
      if (now - this.upSince >= DEAD_AFTER_MS) {
        for (const id of await this.store.nodes.sweepDeadNodes(now - DEAD_AFTER_MS, now)) {
          this.log.warn(
            `node ${id} sent no heartbeat for ${formatDuration(DEAD_AFTER_MS)}: declared dead, its clients released (they connect again to any node)`,
          );
          registry.changed();
        }
      }
    } catch (err) {
      this.log.warn(`cluster upkeep failed: ${errorMessage(err)}`);
    }
  }

  peers(): Map<string, NodeRow> {
    return this.peerNodes;
  }

  /**
   * The API URL of a node, when this node's configuration lets it call that address: a row in the nodes table
   * is only as trustworthy as the database, and a planted one must not draw calls to any listener.
   */
  private urlOf(node: NodeRow): string {
    let url: URL | undefined;
    try {
      url = new URL(node.api_url);
    } catch {
      // Refused below, with the text as it is.
    }
    const host = url?.hostname.replace(/^\[(.*)\]$/, '$1') ?? '';
    const port = Number(url?.port || (url?.protocol === 'https:' ? 443 : 80));
    // https: a node with [api] cert_file; fetch checks its certificate against the system's CAs (and
    // NODE_EXTRA_CA_CERTS), so it must name the node's IP address.
    const allowed =
      !!url &&
      (url.protocol === 'http:' || url.protocol === 'https:') &&
      url.origin + '/' === url.href &&
      isIP(host) !== 0 &&
      !!this.address.allowedNodes?.allows(host, port);
    if (!allowed) {
      const why = this.address.allowedNodes
        ? 'an address outside [database] allowed_node_addresses'
        : 'a node on SQLite calls no other node';
      throw new NodeUnavailable(
        `node ${node.id} is registered at ${JSON.stringify(node.api_url.slice(0, 200))}, ${why}: not called (a row planted in the nodes table, or add the node's address to allowed_node_addresses)`,
      );
    }
    return url!.origin;
  }

  /** A signed call to another node's API; the error says which node and why when it cannot be made. */
  private call(node: NodeRow, method: string, url: string, body: unknown, timeoutMs: number): Promise<Response> {
    // Appended, not resolved: a path like //host/... must not name another host.
    const target = new URL(`${this.urlOf(node)}${url}`);
    const text = body === undefined ? '' : JSON.stringify(body);
    // Signed as sent: the URL parser may percent-encode what the caller's client left raw.
    const headers: Record<string, string> = {
      [SIGNATURE_HEADER]: this.signer.sign(method, target.pathname + target.search, text),
    };
    if (body !== undefined) headers['content-type'] = 'application/json';
    return fetch(target, {
      method,
      headers,
      body: body === undefined ? undefined : text,
      signal: AbortSignal.timeout(timeoutMs),
    });
  }

  async takeOver(node: NodeRow, info: ConnectRequest, ip: string): Promise<void> {
    let res: Response;
    try {
      const body = {
        pid: info.pid,
        process_start: info.processStart,
        hostname: info.hostname,
        address: ip,
        node_id: this.nodeId,
      };
      res = await this.call(
        node,
        'POST',
        `/api/v1/cluster/clients/${encodeURIComponent(info.id)}/takeover`,
        body,
        TAKEOVER_TIMEOUT_MS,
      );
    } catch (err) {
      // A node that does not answer is taken to be gone: its session cannot be serving the client.
      if (err instanceof NodeUnavailable) this.log.warn(`client ${info.id}: ${err.message}; taken over`);
      else
        this.log.info(
          `client ${info.id} was held by node ${node.id}, which cannot be called (${callFailure(err, TAKEOVER_TIMEOUT_MS)}): taken over`,
        );
      return;
    }
    const text = await res.text().catch(() => '');
    if (res.status === 409)
      throw new Refusal(
        'duplicate',
        `${errorTitle(text, 'the session on the other node is alive')} (on node ${node.id})`,
      );
    if (!res.ok)
      this.log.warn(`client ${info.id}: node ${node.id} answered the takeover with ${res.status}: taken over anyway`);
  }

  /** The claims of another node's signature on a call to this node, or the one line that says why it is refused. */
  verify(method: string, url: string, header: string): Signed | string {
    return this.signer.verify(method, url, header);
  }

  /** Sends the request on to the node, signed. */
  async forward(node: NodeRow, req: ForwardedRequest): Promise<{ status: number; body: string }> {
    if (!node.api_url) throw new NodeUnavailable(`client is held by node ${node.id}, which has no API to forward to`);
    try {
      const res = await this.call(node, req.method, req.url, req.body, FORWARD_TIMEOUT_MS);
      return { status: res.status, body: await res.text() };
    } catch (err) {
      if (err instanceof NodeUnavailable) throw err;
      throw new NodeUnavailable(
        `the client is held by node ${node.id} (${node.api_url}), which cannot be called: ${callFailure(err, FORWARD_TIMEOUT_MS)}; a client whose node is gone connects again to another node, retry then`,
      );
    }
  }

  status(): Record<string, unknown> {
    return {
      node_id: this.nodeId,
      database: { type: this.store.kind, where: this.store.where, up: this.up },
      cluster_nodes: [
        {
          id: this.nodeId,
          api_url: this.address.apiUrl,
          client_address: this.address.clientAddress,
          public_address: this.address.publicHost,
          self: true,
        },
        ...[...this.peerNodes.values()].map((n) => ({
          id: n.id,
          api_url: n.api_url,
          client_address: n.client_address,
          public_address: n.public_host,
          last_heartbeat: new Date(n.heartbeat_at).toISOString(),
          self: false,
        })),
      ],
    };
  }

  /** Leaves the cluster: its row goes, so its peers do not wait for the dead bound. */
  async leave(): Promise<void> {
    clearInterval(this.timer);
    await this.ticking;
    await this.store.nodes.removeNode(this.nodeId).catch(() => undefined);
  }
}
