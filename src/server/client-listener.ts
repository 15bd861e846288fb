import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import ssh2 from 'ssh2';
import { WebSocketServer, type WebSocket } from 'ws';
import { formatDuration } from '../config/duration.js';
import { errorMessage, type Logger } from '../log.js';
import { ControlChannel } from '../transport/control-channel.js';
import type { HostKey } from '../transport/host-key.js';
import { sshStream } from '../transport/ws-stream.js';
import { CONTROL_SUBSYSTEM, METHOD, WS_SUBPROTOCOL, type ConnectReply, type ConnectRequest, type WatchdogFacts } from '../transport/protocol.js';
import type { ClientRegistry, ClientSession } from './client-registry.js';
import type { Credentials } from './credentials.js';
import type { LoginThrottle } from './login-throttle.js';
import type { Metrics } from './metrics.js';
import type { ClientLink, TunnelManager } from './tunnels.js';

/** How long an old session of a returning client id gets to prove it is alive. */
const STALE_CHECK_MAX_MS = 5_000;

export interface ListenerOptions {
  hostKey: HostKey;
  credentials: Credentials;
  throttle: LoginThrottle;
  registry: ClientRegistry;
  log: Logger;
  checkTimeoutMs: number;
  /** From WebSocket upgrade to an accepted connection request; a client that stalls in between is dropped. */
  loginTimeoutMs: number;
  tunnels: TunnelManager;
  metrics: Metrics;
}

/** Checks a connection request field by field; a bad one is named in the refusal. */
function validateConnectRequest(p: unknown): ConnectRequest {
  const r = (p ?? {}) as Record<string, unknown>;
  const str = (k: string, max = 256) => {
    if (typeof r[k] !== 'string' || (r[k] as string).length > max) throw new Error(`connection request field "${k}" must be a string of at most ${max} characters`);
    return r[k] as string;
  };
  const id = str('id', 200);
  if (!id) throw new Error('connection request field "id" must not be empty');
  const tags = r.tags ?? [];
  if (!Array.isArray(tags) || tags.some((t) => typeof t !== 'string') || tags.length > 100) throw new Error('connection request field "tags" must be a list of at most 100 strings');
  const watchdog = r.watchdog === undefined ? undefined : validateWatchdogFacts(r.watchdog);
  const remotes = r.remotes ?? [];
  if (!Array.isArray(remotes) || remotes.some((t) => typeof t !== 'string') || remotes.length > 1000) throw new Error('connection request field "remotes" must be a list of at most 1000 strings');
  for (const k of ['pid', 'processStart']) {
    if (!Number.isSafeInteger(r[k])) throw new Error(`connection request field "${k}" must be an integer`);
  }
  return {
    id, name: str('name'), tags: tags as string[], hostname: str('hostname'), os: str('os', 64), arch: str('arch', 64),
    version: str('version', 64), pid: r.pid as number, processStart: r.processStart as number,
    remotes: remotes as string[],
    watchdog,
  };
}

function validateWatchdogFacts(w: unknown): WatchdogFacts | undefined {
  const f = w as Record<string, unknown> | null;
  if (!f || typeof f !== 'object' || typeof f.integration !== 'boolean' || typeof f.heartbeat_budget_sec !== 'number' || typeof f.last_state !== 'string'
    || !(f.systemd_watchdog_sec === null || typeof f.systemd_watchdog_sec === 'number')) {
    throw new Error('connection request field "watchdog" must be {integration, systemd_watchdog_sec, heartbeat_budget_sec, last_state}');
  }
  return { integration: f.integration, systemd_watchdog_sec: f.systemd_watchdog_sec as number | null, heartbeat_budget_sec: f.heartbeat_budget_sec, last_state: f.last_state.slice(0, 32) };
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

  constructor(private readonly o: ListenerOptions) {
    this.ssh = new ssh2.Server({ hostKeys: [o.hostKey.privateKey] }, (client, info) => this.onSsh(client, info.ip, info.port));
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const ip = (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    const refuse = (status: number, why: string) => {
      socket.end(`HTTP/1.1 ${status} ${why.split(':')[0]}\r\nX-Rport-Error: ${why}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    const banned = this.o.throttle.sourceBannedFor(ip);
    if (banned > 0) {
      this.o.metrics.handshakeFailures.inc({ reason: 'banned' });
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

  private onSsh(client: ssh2.Connection, ip: string, port: number): void {
    const log = this.o.log;
    const ws = this.handshaking.get(`${ip}|${port}`);
    this.handshaking.delete(`${ip}|${port}`);
    // end() waits for the peer's close handshake, which a dead peer never sends.
    const drop = () => {
      client.end();
      ws?.terminate();
    };
    let authId = '';
    let session: ClientSession | undefined;
    let link: ClientLink | undefined;
    const setupTimer = setTimeout(() => {
      log.warn(`dropping ${ip}: no accepted connection request within ${formatDuration(this.o.loginTimeoutMs)} ([server] client_login_timeout)`);
      this.o.metrics.handshakeFailures.inc({ reason: 'timeout' });
      drop();
    }, this.o.loginTimeoutMs);
    client.on('error', (err) => log.debug(`connection from ${ip}: ${errorMessage(err)}`));
    client.on('close', () => {
      clearTimeout(setupTimer);
      if (link && session) this.o.tunnels.detach(session.info.id, link);
      if (session) {
        this.o.registry.delete(session);
        log.info(`client ${session.info.id} disconnected (${ip})`);
      }
    });

    client.on('authentication', async (ctx) => {
      if (ctx.method !== 'password') return ctx.reject(['password']);
      const ok = await this.o.credentials.verify(ctx.username, ctx.password).catch(() => false);
      if (ok) {
        authId = ctx.username;
        this.o.throttle.succeeded(ip, ctx.username);
        return ctx.accept();
      }
      this.o.metrics.handshakeFailures.inc({ reason: 'auth' });
      const banned = this.o.throttle.failed(ip, ctx.username);
      log.warn(`failed login as "${ctx.username}" from ${ip}${banned ? `: ${ip} is now banned (max_failed_login reached)` : ''}`);
      ctx.reject(['password']);
    });

    // Tunnel bindings: the bind address is a tunnel id the client agreed to carry (see TunnelTargets).
    client.on('request', (accept, reject, name) => {
      if (name === 'tcpip-forward' || name === 'cancel-tcpip-forward') accept?.();
      else reject?.();
    });

    client.on('ready', () => {
      client.on('session', (accept) => {
        const s = accept();
        s.on('subsystem', (acceptSub, rejectSub, info) => {
          if (info.name !== CONTROL_SUBSYSTEM || session) return rejectSub();
          const control = new ControlChannel(acceptSub());
          control.on('activity', () => {
            if (session) session.lastSeenAt = Date.now();
          });
          control.handle(METHOD.ping, () => ({ now: Date.now() }));
          control.handle(METHOD.connect, async (params): Promise<ConnectReply> => {
            if (session) throw new Error('already connected on this connection');
            let info: ConnectRequest;
            try {
              info = validateConnectRequest(params);
              await this.replaceStale(info, ip);
            } catch (err) {
              this.o.metrics.handshakeFailures.inc({ reason: 'refused' });
              throw err;
            }
            session = this.makeSession(info, authId, ip, control, drop);
            this.o.registry.set(session);
            clearTimeout(setupTimer);
            this.o.metrics.handshakes.inc();
            log.info(`client ${info.id} (${info.name}) connected from ${ip} as ${authId}, version ${info.version}, pid ${info.pid}`);
            const l: ClientLink = (link = { control, ssh: client });
            // After the reply: the client must be connected before it can answer tunnel requests.
            setImmediate(() => void this.o.tunnels.attach(info.id, l, info.remotes));
            return { sessionId: session.sessionId };
          });
          control.on('close', () => client.end());
        });
      });
    });
  }

  /**
   * A client id that is already registered: if the old session is the same process reconnecting, or does
   * not answer a short ping, it is stale and goes; a live one keeps the id and the newcomer is refused.
   */
  private async replaceStale(info: ConnectRequest, ip: string): Promise<void> {
    const old = this.o.registry.get(info.id);
    if (!old) return;
    const sameProcess = old.info.pid === info.pid && old.info.processStart === info.processStart && old.info.hostname === info.hostname;
    if (!sameProcess) {
      try {
        const rtt = await old.ping(Math.min(this.o.checkTimeoutMs, STALE_CHECK_MAX_MS));
        throw new Error(`client id "${info.id}" is already connected from ${old.remoteAddress} and answered a ping within ${rtt.toFixed(1)}ms: give each client its own [client] id`);
      } catch (err) {
        if (errorMessage(err).startsWith('client id')) throw err;
      }
    }
    this.o.log.info(`replacing the stale session of client ${info.id} (from ${old.remoteAddress}) with the new one from ${ip}`);
    this.o.registry.delete(old);
    old.close('replaced by a new connection of the same client');
  }

  private makeSession(info: ConnectRequest, authId: string, ip: string, control: ControlChannel, drop: () => void): ClientSession {
    const now = Date.now();
    const session: ClientSession = {
      sessionId: randomUUID(),
      info,
      authId,
      remoteAddress: ip,
      watchdog: info.watchdog,
      connectedAt: now,
      lastSeenAt: now,
      lastPingAt: undefined,
      lastRttMs: undefined,
      ping: async (timeoutMs) => {
        const t0 = performance.now();
        await control.request(METHOD.ping, {}, timeoutMs);
        const rtt = performance.now() - t0;
        session.lastPingAt = Date.now();
        session.lastRttMs = Math.round(rtt * 1000) / 1000;
        return rtt;
      },
      close: (reason) => {
        this.o.log.debug(`closing the session of ${info.id}: ${reason}`);
        control.close();
        drop();
      },
    };
    // A client's own pings also count as proof of life and give the round trip the API shows.
    control.handle(METHOD.ping, (params) => {
      session.lastPingAt = Date.now();
      const p = (params ?? {}) as { last_rtt_ms?: unknown; watchdog?: unknown };
      if (typeof p.last_rtt_ms === 'number' && Number.isFinite(p.last_rtt_ms) && p.last_rtt_ms >= 0) {
        session.lastRttMs = Math.round(p.last_rtt_ms * 1000) / 1000;
        this.o.metrics.pingRtt.observe(p.last_rtt_ms / 1000);
      }
      let facts: WatchdogFacts | undefined;
      try {
        facts = p.watchdog === undefined ? undefined : validateWatchdogFacts(p.watchdog);
      } catch {
        facts = undefined; // a malformed report is ignored, the ping still counts
      }
      this.o.registry.seen(session, facts);
      return { now: Date.now() };
    });
    return session;
  }
}
