import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import ssh2 from 'ssh2';
import { WebSocketServer, type WebSocket } from 'ws';
import { formatDuration } from '../config/duration.js';
import { LogLimiter } from '../log.js';
import type { HostKey } from '../transport/host-key.js';
import { sshStream } from '../transport/ws-stream.js';
import { AUTH_ID_HEADER, WS_SUBPROTOCOL } from '../transport/protocol.js';
import { ClientConnection, type ConnectionContext } from './client-connection.js';
import { KeyedLock } from './keyed-lock.js';

export interface ListenerOptions extends Omit<ConnectionContext, 'limited' | 'connecting'> {
  hostKey: HostKey;
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
    maxPayload: 4 << 20,
    handleProtocols: (protocols) => (protocols.has(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : false),
  });
  private readonly ssh: ssh2.Server;
  private readonly sockets = new Set<WebSocket>();
  /** WebSockets whose SSH handshake has not reached the connection callback yet, by "ip|port". */
  private readonly handshaking = new Map<string, WebSocket>();

  private readonly context: ConnectionContext;

  constructor(private readonly o: ListenerOptions) {
    this.context = { ...o, limited: new LogLimiter(o.log), connecting: new KeyedLock() };
    this.ssh = new ssh2.Server({ hostKeys: [o.hostKey.privateKey] }, (client, info) => {
      const key = `${info.ip}|${info.port}`;
      const ws = this.handshaking.get(key);
      this.handshaking.delete(key);
      new ClientConnection(this.context, client, info.ip, ws);
    });
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const ip = (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    const refuse = (status: number, why: string) => {
      socket.end(`HTTP/1.1 ${status} ${why.split(':')[0]}\r\nX-Rport-Error: ${why}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    const claimed = decodeHeader(req.headers[AUTH_ID_HEADER]);
    const banned = claimed === undefined ? this.o.throttle.sourceBannedFor(ip) : this.o.throttle.bannedFor(ip, claimed);
    if (banned > 0) {
      this.o.metrics.handshakeFailures.inc({ reason: 'banned' });
      this.context.limited.warn('banned', `refused a connection from ${ip}${claimed === undefined ? '' : ` for "${claimed}"`}: banned after too many failed logins`);
      return refuse(403, `too many failed logins from ${ip}: banned for another ${formatDuration(Math.ceil(banned / 1000) * 1000)}`);
    }
    const offered = String(req.headers['sec-websocket-protocol'] ?? '').split(',').map((s) => s.trim());
    if (!offered.includes(WS_SUBPROTOCOL)) return refuse(400, `WebSocket subprotocol ${WS_SUBPROTOCOL} required: is this an rport client?`);
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const key = `${ip}|${req.socket.remotePort}`;
      this.sockets.add(ws);
      this.handshaking.set(key, ws);
      ws.on('close', () => {
        this.sockets.delete(ws);
        if (this.handshaking.get(key) === ws) this.handshaking.delete(key);
      });
      const stream = sshStream(ws);
      Object.assign(stream, { remoteAddress: ip, remotePort: req.socket.remotePort, remoteFamily: req.socket.remoteFamily });
      this.ssh.injectSocket(stream as never);
    });
  }

  /** Ends every client connection (server shutdown). */
  closeAll(): void {
    for (const ws of this.sockets) ws.terminate();
    this.wss.close();
  }
}
