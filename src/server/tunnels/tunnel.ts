import type { Server, Socket } from 'node:net';
import type ssh2 from 'ssh2';
import type { AddressRules, HostPort } from '../../shared/host-port.js';
import type { Control } from '../../transport/control-channel.js';
import type { Deadline } from '../../timeout.js';

/**
 * A host and port, parsed once where it comes in (the API's query, a [client] remotes entry, a stored row)
 * and passed on as this value; formatted only where it goes out (the wire, a row, the API, a log line).
 */
export type Endpoint = Readonly<HostPort>;

/** Why a tunnel request cannot be carried out: the API answers the code with its own HTTP status. */
export type TunnelErrorCode =
  | 'bind_address_not_allowed'
  | 'port_not_allowed'
  | 'too_many_tunnels'
  | 'client_not_connected'
  | 'bad_request'
  | 'tunnel_refused'
  | 'client_unavailable'
  | 'port_unavailable'
  | 'database_unavailable';

/** A tunnel request that cannot be carried out; the message is the one line a user reads. */
export class TunnelError extends Error {
  constructor(
    readonly code: TunnelErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Opens one channel that carries one tunnel connection. */
export type Forward = (
  tunnelId: string,
  originIp: string,
  originPort: number,
  cb: (err: Error | undefined, channel: ssh2.Channel) => void,
) => void;

/** What the tunnel manager needs of a connected client. */
export interface ClientLink {
  control: Control;
  /** Opens the channel of one tunnel connection (rport's forwarded-tcpip under the tunnel's binding, RPort's `rport` channel). */
  forward: Forward;
}

export interface TunnelRequest {
  /** Port 0: a free one from used_ports; host "": the first of tunnel_bind_addresses. */
  local: Endpoint;
  remote: Endpoint;
  acl: string[];
  idleTimeoutMs: number;
}

export interface Tunnel {
  id: string;
  clientId: string;
  /** Its port is the one it got once it listens (the request may have left it to used_ports). */
  local: Endpoint;
  remote: Endpoint;
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
