import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import ssh2 from 'ssh2';
import { WebSocketServer, type WebSocket } from 'ws';
import { formatDuration } from '../shared/duration.js';
import { plainAddress } from '../shared/host-port.js';
import { errorMessage, LogLimiter } from '../log.js';
import { withTimeout } from '../timeout.js';
import type { HostKey } from '../transport/host-key.js';
import { sshStream } from '../transport/ws-stream.js';
import { AUTH_ID_HEADER, WS_SUBPROTOCOL } from '../transport/protocol.js';
import { PendingConnections, type AdmissionEvent, type AdmissionLimits } from './admission.js';
import { ClientConnection, type ConnectionContext } from './client-connection.js';
import { KeyedLock } from './keyed-lock.js';
import { formatBan } from './login-throttle.js';

export interface ListenerOptions extends Omit<ConnectionContext, 'limited' | 'connecting'> {
  hostKey: HostKey;
  /** Bounds on connections that have not logged in yet. */
  admission: AdmissionLimits;
}

/**
 * WebSocket frames before SSH auth: key exchange and the auth request are a few KiB, so an unauthenticated
 * peer cannot make the server hold megabytes of a frame it never finishes.
 */
export const PRE_AUTH_MAX_PAYLOAD = 16 << 10;
/** After auth: one SSH packet a frame (64 KiB of data with the ssh2 patch), with room to spare. */
export const MAX_PAYLOAD = 256 << 10;
/** The identification lines ssh2 takes (with the patch): SSH's own and RPort's. */
const SSH_IDENT = /^SSH-(2\.0|1\.99|rport-v1)-\S/;
/** Shutdown waits this long for the client connections' close handling; the process has 2 s in all. */
const CLOSE_WAIT_MS = 1000;

/** Raises a WebSocket's frame limit once its peer logged in (ws reads the limit on every frame). */
function allowLargerFrames(ws: WebSocket): void {
  const receiver = (ws as unknown as { _receiver?: { _maxPayload: number } })._receiver;
  if (receiver && typeof receiver._maxPayload === 'number') receiver._maxPayload = MAX_PAYLOAD;
}

function decodeHeader(value: string | string[] | undefined): string | undefined {
  if (typeof value !== 'string') return undefined;
  try {
    return decodeURIComponent(value);
  } catch {
    return undefined;
  }
}

/** Accepts clients: WebSocket upgrade (subprotocol rport-v1), SSH inside it, then the control channel. */
export class ClientListener {
  private readonly wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: PRE_AUTH_MAX_PAYLOAD,
    handleProtocols: (protocols) => (protocols.has(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : false),
  });
  private readonly ssh: ssh2.Server;
  private readonly sockets = new Set<WebSocket>();
  /** SSH connections not yet closed: shutdown waits for their close handling (the registry's writes). */
  private readonly clients = new Set<ssh2.Connection>();
  /** WebSockets whose SSH handshake has not reached the connection callback yet, by "ip|port". */
  private readonly handshaking = new Map<string, { ws: WebSocket; socket: Socket }>();
  private readonly context: ConnectionContext;
  private readonly pending: PendingConnections;
  /** Every upgraded socket's 'error' listener (the socket is `this`): one function, not a closure per client. */
  private readonly dropOnError: (this: Duplex, err: Error) => void;

  constructor(private readonly o: ListenerOptions) {
    const limited = new LogLimiter(o.log);
    this.context = { ...o, limited, connecting: new KeyedLock() };
    this.pending = new PendingConnections(o.admission, (e) => this.onAdmission(e));
    const log = o.log;
    this.dropOnError = function (this: Duplex, err: Error) {
      log.debug(`connection from ${plainAddress((this as Socket).remoteAddress)}: ${errorMessage(err)}`);
      this.destroy();
    };
    this.ssh = new ssh2.Server({ hostKeys: [o.hostKey.privateKey] }, (client, info) => {
      const key = `${info.ip}|${info.port}`;
      const h = this.handshaking.get(key);
      this.handshaking.delete(key);
      if (!h) {
        // Its WebSocket went before the SSH identification was read: ending it, a reset meanwhile must not be uncaught.
        client.on('error', () => undefined);
        return void client.end();
      }
      new ClientConnection(this.context, client, info.ip, h.ws, {
        authenticated: () => allowLargerFrames(h.ws),
        accepted: () => this.pending.release(h.socket),
      });
      this.clients.add(client);
      client.once('close', () => this.clients.delete(client));
    });
  }

  /** Every TCP connection to the client port, from accept: counted and timed until it logs in. */
  admit(socket: Socket): void {
    this.pending.admit(socket);
  }

  private onAdmission(e: AdmissionEvent): void {
    const { metrics } = this.o;
    const { limited } = this.context;
    const a = this.o.admission;
    switch (e.kind) {
      case 'per_address':
        metrics.connectionsRefused.inc({ limit: e.kind });
        return limited.warn(
          e.kind,
          `refused a connection from ${e.address}: it already has ${a.perAddress} connections that have not logged in ([server] max_unauthenticated_connections_per_address)`,
        );
      case 'total':
        metrics.connectionsRefused.inc({ limit: e.kind });
        return limited.warn(
          e.kind,
          `closed the oldest connection that had not logged in (from ${e.address}) to make room: ${a.total} are open ([server] max_unauthenticated_connections)`,
        );
      case 'timeout':
        metrics.handshakeFailures.inc({ reason: 'timeout' });
        return limited.warn(
          'login timeout',
          `dropping ${e.address}: no accepted connection request within ${formatDuration(a.loginTimeoutMs)} ([server] client_login_timeout)${e.upgraded ? '' : ', not even a WebSocket upgrade'}`,
        );
    }
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const ip = plainAddress(req.socket.remoteAddress);
    // Node's HTTP server stops handling the socket's errors at the upgrade: a reset after that (even after
    // a refusal is written) would be an uncaught 'error' that ends rportd.
    socket.on('error', this.dropOnError);
    const refuse = (status: number, why: string) => {
      socket.end(
        `HTTP/1.1 ${status} ${why.split(':')[0]}\r\nX-Rport-Error: ${why}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`,
      );
    };
    // Only a banned pair is refused here: an address banned from unknown ids may still log in as an id
    // that exists, and telling the two apart here would tell which ids exist.
    const claimed = decodeHeader(req.headers[AUTH_ID_HEADER]);
    const banned = claimed === undefined ? 0 : this.o.throttle.bannedFor(ip, claimed);
    if (banned > 0) {
      this.o.metrics.handshakeFailures.inc({ reason: 'banned' });
      this.context.limited.warn(
        'banned',
        `refused a connection from ${ip} for "${claimed}": banned after too many failed logins`,
      );
      return refuse(403, `too many failed logins from ${ip}: banned for another ${formatBan(banned)}`);
    }
    const offered = String(req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((s) => s.trim());
    if (!offered.includes(WS_SUBPROTOCOL))
      return refuse(400, `WebSocket subprotocol ${WS_SUBPROTOCOL} required: is this an rport client?`);
    this.pending.upgraded(req.socket);
    const tcp = req.socket;
    this.wss.handleUpgrade(req, socket, head, (ws) => this.upgraded(ws, ip, tcp));
  }

  /**
   * Not inline in handleUpgrade: the listeners made here live as long as the connection, and a closure
   * there would keep handleUpgrade's scope, the upgrade request with its headers (about 1.5 KB per client).
   */
  private upgraded(ws: WebSocket, ip: string, tcp: Socket): void {
    const key = `${ip}|${tcp.remotePort}`;
    this.sockets.add(ws);
    this.handshaking.set(key, { ws, socket: tcp });
    ws.on('close', () => {
      this.sockets.delete(ws);
      if (this.handshaking.get(key)?.ws === ws) this.handshaking.delete(key);
    });
    // ssh2 drops a peer whose first line is not SSH's without a word: say so here, where the address is known.
    ws.once('message', (first: Buffer) => {
      const line = first.subarray(0, 64).toString('latin1').split(/\r?\n/)[0]!;
      if (!SSH_IDENT.test(line))
        this.context.limited.warn(
          'identification line',
          `refused a connection from ${ip} at the identification line: it sent "${line}", not "SSH-2.0-..." or RPort's "SSH-rport-v1-client"`,
        );
    });
    const stream = sshStream(ws);
    Object.assign(stream, { remoteAddress: ip, remotePort: tcp.remotePort, remoteFamily: tcp.remoteFamily });
    this.ssh.injectSocket(stream as never);
  }

  /** Ends every client connection (server shutdown). */
  closeAll(): Promise<void> {
    const closed = Promise.all([...this.clients].map((c) => new Promise<void>((r) => c.once('close', () => r()))));
    for (const ws of this.sockets) ws.terminate();
    this.wss.close();
    return withTimeout(closed, CLOSE_WAIT_MS, 'closing the client connections').then(
      () => undefined,
      (err) => this.o.log.warn(errorMessage(err)),
    );
  }
}
