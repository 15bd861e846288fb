/* eslint-disable max-lines -- one client's session from SSH auth to close; split, its states would be shared between files */
import { randomUUID } from 'node:crypto';
import type ssh2 from 'ssh2';
import type { WebSocket } from 'ws';
import { formatDuration } from '../shared/duration.js';
import { errorMessage, type LogLimiter, type Logger } from '../log.js';
import { deadline } from '../timeout.js';
import { ControlChannel, type Control } from '../transport/control-channel.js';
import {
  CONTROL_SUBSYSTEM,
  METHOD,
  RPORT_REFUSAL,
  RPORT_REQUEST,
  TUNNEL_BIND_PORT,
  type ConnectReply,
  type ConnectRequest,
  type WatchdogFacts,
} from '../transport/protocol.js';
import { PoolBusyError } from './bcrypt-pool.js';
import type { ClientRegistry, ClientSession } from './client-registry.js';
import { parseRportConnectionRequest, validateConnectRequest, validateWatchdogFacts } from './connect-request.js';
import type { CheckResult, Credentials } from './credentials.js';
import { checkIdentity, type IdentityRules } from './identity.js';
import type { KeyedLock } from './keyed-lock.js';
import { formatBan, SOURCE_FACTOR, type LoginThrottle } from './login-throttle.js';
import type { Metrics } from './metrics.js';
import { Refusal } from './refusal.js';
import { RPortRequests, type Accept, type Reject } from './rport-requests.js';
import type { ClientLink, Forward, TunnelManager } from './tunnels/index.js';

/** How long an old session of a returning client id gets to prove it is alive. */
const STALE_CHECK_MAX_MS = 5_000;
/** A client sends a ping every keep_alive and answers what the server asks: far fewer than this. */
export const CONTROL_MESSAGES_PER_SECOND = 200;

/** What every connection shares: the server's parts and its rules. */
export interface ConnectionContext {
  credentials: Credentials;
  throttle: LoginThrottle;
  registry: ClientRegistry;
  tunnels: TunnelManager;
  metrics: Metrics;
  log: Logger;
  /** Failed logins and refusals: a peer can repeat them at will. */
  limited: LogLimiter;
  /** Connection requests run one at a time per client id, so two racing for one id cannot both win. */
  connecting: KeyedLock;
  identity: IdentityRules;
  maxAuthTries: number;
  checkTimeoutMs: number;
  /** Remote commands: each accepted connection carries the client's jobs. */
  jobs?: { attach(clientId: string, control: Control): void };
}

/** What the listener does when a connection gets further. */
export interface ConnectionHooks {
  /** The password was right: larger WebSocket frames may come now. */
  authenticated(): void;
  /** The connection request was accepted: no longer a pending connection (client_login_timeout stops). */
  accepted(): void;
}

/**
 * One client's SSH connection, from password auth through the connection request to its end: an rport
 * client's (our control subsystem, tunnel bindings) or a stock RPort client's (RPort's new_connection and
 * the requests and channels after it, see RPortRequests). Password auth for both.
 */
export class ClientConnection {
  private authId = '';
  private authTries = 0;
  private probed = false;
  private sessionOpened = false;
  private session: ClientSession | undefined;
  private link: ClientLink | undefined;
  private closed = false;
  /** A stock RPort client's requests, once its connection request was accepted. */
  private rport: RPortRequests | undefined;
  private rportConnecting = false;
  /** The step a failure now ends (a refusal, logged with it), until the client is connected. */
  private step: string | undefined = 'key exchange';

  constructor(
    private readonly c: ConnectionContext,
    private readonly client: ssh2.Connection,
    private readonly ip: string,
    private readonly ws: WebSocket | undefined,
    private readonly hooks: ConnectionHooks,
  ) {
    client.on('error', (err) => {
      if (!this.step || this.session) return c.log.debug(`connection from ${ip}: ${errorMessage(err)}`);
      c.limited.warn(
        `refused ${this.step}`,
        `refused a connection from ${ip} at the ${this.step}: ${errorMessage(err)}`,
      );
    });
    client.once('handshake', () => (this.step = 'authentication'));
    client.on('close', () => this.onClose());
    client.on('authentication', (ctx) => void this.onAuthentication(ctx));
    // The ssh2 patch hands over every global request (RPort's carry JSON) and channels of other types.
    const events = client as unknown as NodeJS.EventEmitter;
    events.on('request', (accept: Accept, reject: Reject, name: string, data: unknown) =>
      this.onRequest(name, Buffer.isBuffer(data) ? data : undefined, accept, reject),
    );
    events.on(
      'channel',
      (type: string, data: Buffer | undefined, accept: () => ssh2.Channel, reject: (code?: number) => void) => {
        if (this.rport) return this.rport.onChannel(type, data, accept, reject);
        reject(1); // SSH_OPEN_ADMINISTRATIVELY_PROHIBITED
        c.metrics.messagesRefused.inc({ kind: 'channel' });
        c.limited.warn('channel', `refused a channel of type "${type.slice(0, 64)}" from ${ip}: not one rportd takes`);
      },
    );
    client.on('ready', () => {
      this.step = 'connection request';
      client.on('session', (accept, reject) => this.onSession(accept, reject));
    });
  }

  /** end() waits for the peer's close handshake, which a dead peer never sends. */
  private drop(): void {
    this.client.end();
    this.ws?.terminate();
  }

  private onClose(): void {
    this.closed = true;
    const s = this.session;
    if (!s) return;
    if (this.link) this.c.tunnels.detach(s.info.id, this.link);
    this.c.registry.delete(s);
    this.c.log.info(`client ${s.info.id} disconnected (${this.ip})`);
  }

  private async onAuthentication(ctx: ssh2.AuthContext): Promise<void> {
    const { c, ip } = this;
    // The first "none" probe is how SSH clients ask which methods there are; every other attempt counts.
    if (ctx.method === 'none' && !this.probed) {
      this.probed = true;
      return ctx.reject(['password']);
    }
    if (++this.authTries > c.maxAuthTries) {
      c.limited.warn(
        'auth tries',
        `closing the connection from ${ip}: more than ${c.maxAuthTries} login attempts on it ([server] max_auth_tries)`,
      );
      ctx.reject();
      return this.drop();
    }
    if (ctx.method !== 'password') return ctx.reject(['password']);
    const user = ctx.username;
    // Counted before the check: a hundred parallel guesses get at most max_failed_login checks.
    const attempt = c.throttle.begin(ip, user);
    if (attempt.bannedMs > 0) {
      c.metrics.handshakeFailures.inc({ reason: 'banned' });
      c.limited.warn(
        'banned login',
        `refused a login as "${user}" from ${ip}: banned for another ${formatBan(attempt.bannedMs)} after max_failed_login failures`,
      );
      return ctx.reject(['password']);
    }
    let result: CheckResult;
    try {
      result = await c.credentials.verify(user, ctx.password);
    } catch (err) {
      // Too many checks waiting: refused, not counted against the id (the flood is not its fault).
      c.throttle.cancel(ip, user);
      c.metrics.handshakeFailures.inc({ reason: 'busy' });
      c.limited.warn(
        'busy',
        `refused a login as "${user}" from ${ip} unchecked: ${err instanceof PoolBusyError ? err.message : errorMessage(err)}`,
      );
      return ctx.reject(['password']);
    }
    if (result === 'ok') {
      c.throttle.succeeded(ip, user);
      if (this.closed) return;
      this.authId = user;
      this.hooks.authenticated();
      return ctx.accept();
    }
    // An address that sprayed over unknown ids may go on trying only ids that exist (each under its own count).
    const sourceBan = result === 'unknown' ? c.throttle.sourceBannedFor(ip) : 0;
    if (sourceBan > 0) {
      c.throttle.cancel(ip, user);
      c.metrics.handshakeFailures.inc({ reason: 'banned' });
      c.limited.warn(
        'banned login',
        `refused a login as "${user}" from ${ip}: the address is banned from unknown ids for another ${formatBan(sourceBan)} after ${c.throttle.maxFailed * SOURCE_FACTOR} failures at unknown ids`,
      );
    } else {
      c.metrics.handshakeFailures.inc({ reason: 'auth' });
      const ban = c.throttle.failed(ip, attempt, result !== 'unknown');
      const what =
        ban === 'source'
          ? `: ${ip} may not try unknown ids for ban_time (${c.throttle.maxFailed * SOURCE_FACTOR} failures at unknown ids)`
          : ban === 'account'
            ? `: ${ip} may not try "${user}" for ban_time (max_failed_login reached)`
            : '';
      c.limited.warn('failed login', `failed login as "${user}" from ${ip}${what}`);
    }
    if (!this.closed) ctx.reject(['password']);
  }

  private onRequest(name: string, data: Buffer | undefined, accept: Accept, reject: Reject): void {
    // Tunnel bindings: the bind address is a tunnel id the client agreed to carry (see TunnelTargets).
    if (name === 'tcpip-forward' || name === 'cancel-tcpip-forward') return accept?.();
    if (this.rport) return this.rport.onRequest(name, data, accept, reject);
    if (name === RPORT_REQUEST.connect && !this.session && !this.rportConnecting)
      return void this.onRportConnect(data, accept, reject);
    reject?.();
  }

  /** A stock RPort client's connection request: answered with its remotes, or false and the reason it shows. */
  private async onRportConnect(data: Buffer | undefined, accept: Accept, reject: Reject): Promise<void> {
    this.rportConnecting = true;
    const control = new RPortRequests(this.client, this.ip, this.authId, this.c, CONTROL_MESSAGES_PER_SECOND);
    control.on('activity', () => {
      if (this.session) this.session.lastSeenAt = Date.now();
    });
    control.on('updates', (json: string) => {
      if (this.session) this.c.registry.updatesStatus(this.session, json);
    });
    let remotes: unknown;
    try {
      const asked = parseRportConnectionRequest(data);
      remotes = asked.remotes;
      await this.connectRequest(asked.request, control, control.forward, (id) => (control.clientId = id));
    } catch (err) {
      const refusal = this.refused(err);
      // RPort's client matches these words: it closes and retries with its backoff.
      const text =
        refusal.reason === 'duplicate' ? `${RPORT_REFUSAL.alreadyConnected} ${refusal.message}` : refusal.message;
      reject?.(Buffer.from(text));
      // Not drop(): the reason must reach the client first. A peer that never closes is still pending, so
      // client_login_timeout ends it.
      return void this.client.end();
    }
    this.rport = control;
    accept?.(Buffer.from(JSON.stringify(remotes)));
    control.sendCapabilities();
  }

  /** Logs and counts a refused connection request; what the client is told. */
  private refused(err: unknown): Refusal {
    const refusal = err instanceof Refusal ? err : new Refusal('refused', errorMessage(err));
    this.c.metrics.handshakeFailures.inc({ reason: refusal.reason });
    this.c.limited.warn(
      `refused ${refusal.reason}`,
      `refused a connection request from ${this.ip} as ${this.authId}: ${refusal.message}`,
    );
    return refusal;
  }

  /** One session channel per connection, for our control subsystem; anything else is refused. */
  private onSession(accept: () => ssh2.Session, reject: () => void): void {
    if (this.sessionOpened) return reject();
    this.sessionOpened = true;
    const s = accept();
    s.on('subsystem', (acceptSub, rejectSub, info) => {
      if (info.name !== CONTROL_SUBSYSTEM || this.session) return rejectSub();
      const control = new ControlChannel(acceptSub(), CONTROL_MESSAGES_PER_SECOND);
      control.on('activity', () => {
        if (this.session) this.session.lastSeenAt = Date.now();
      });
      control.handle(METHOD.ping, () => ({ now: Date.now() }));
      const forward: Forward = (id, ip, port, cb) => this.client.forwardOut(id, TUNNEL_BIND_PORT, ip, port, cb);
      control.handle(METHOD.connect, async (params) => {
        try {
          return await this.connectRequest(validateConnectRequest(params), control, forward);
        } catch (err) {
          throw this.refused(err);
        }
      });
      control.on('close', () => this.client.end());
    });
  }

  /** A connection request of either protocol; named: the client id once it is known. */
  private async connectRequest(
    asked: ConnectRequest,
    control: Control,
    forward: Forward,
    named?: (id: string) => void,
  ): Promise<ConnectReply> {
    if (this.session) throw new Refusal('refused', 'already connected on this connection');
    const { c } = this;
    // As RPort: no id from the client gets the credential's id under equate_clientauthid_clientid, else a new one.
    const info = asked.id ? asked : { ...asked, id: c.identity.equateAuthIdClientId ? this.authId : randomUUID() };
    named?.(info.id);
    return c.connecting.run(info.id, async () => {
      if (this.closed) throw new Refusal('refused', 'the connection closed while it waited for its turn');
      await checkIdentity(info.id, this.authId, c.identity, c.registry, c.credentials).catch(storeDown);
      await this.replaceStale(info);
      if (this.closed) throw new Refusal('refused', 'the connection closed during the stale-session check');
      const session = this.makeSession(info, control, forward);
      await c.registry.set(session);
      if (this.closed) {
        c.registry.delete(session);
        throw new Refusal('refused', 'the connection closed while it was being registered');
      }
      this.session = session;
      c.jobs?.attach(info.id, control);
      this.hooks.accepted();
      c.metrics.handshakes.inc();
      c.log.info(
        `client ${info.id} (${info.name}) connected from ${this.ip} as ${this.authId}, version ${info.version}, pid ${info.pid}`,
      );
      const link: ClientLink = (this.link = { control, forward });
      // After the reply: the client must be connected before it can answer tunnel requests.
      setImmediate(() => void c.tunnels.attach(info.id, link, info.remotes));
      return { sessionId: session.sessionId };
    });
  }

  /** A client id that is already registered, here or on another node: its old session goes if it is stale. */
  private async replaceStale(info: ConnectRequest): Promise<void> {
    const { c } = this;
    const old = c.registry.get(info.id);
    // Not here: held by another node of the cluster? That node checks its session the same way.
    if (!old) return c.registry.takeOverRemote(info, this.ip).catch(storeDown);
    await checkStale(old, info, this.ip, c.checkTimeoutMs);
    c.log.info(
      `replacing the stale session of client ${info.id} (from ${old.remoteAddress}) with the new one from ${this.ip}`,
    );
    c.registry.delete(old);
    old.close('replaced by a new connection of the same client');
  }

  private makeSession(info: ConnectRequest, control: Control, forward: Forward): ClientSession {
    const { c } = this;
    const now = Date.now();
    const session: ClientSession = {
      sessionId: randomUUID(),
      info,
      authId: this.authId,
      remoteAddress: this.ip,
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
      // A stock RPort client: its check_port. Else one forwarded channel, as for a tunnel connection: rport's
      // client opens it only once it reached the target.
      probeTunnel: (tunnelId, timeoutMs) =>
        control instanceof RPortRequests
          ? control.checkPort(tunnelId, timeoutMs)
          : new Promise((resolve, reject) => {
              let done = false;
              const answer = deadline(timeoutMs, 'tunnel probe', () => {
                done = true;
                reject(new Error(`no answer within ${formatDuration(timeoutMs)}`));
              });
              forward(tunnelId, '127.0.0.1', 0, (err, channel) => {
                answer.cancel();
                if (!err) channel.close();
                if (done) return;
                done = true;
                if (err) reject(err);
                else resolve();
              });
            }),
      refreshUpdates: (timeoutMs) =>
        control instanceof RPortRequests
          ? control.refreshUpdates(timeoutMs)
          : Promise.reject(new Error("rport's client reports no pending OS updates (only RPort's client does)")),
      close: (reason) => {
        c.log.debug(`closing the session of ${info.id}: ${reason}`);
        control.close();
        this.drop();
      },
    };
    // A client's own pings also count as proof of life and give the round trip the API shows.
    control.handle(METHOD.ping, (params) => {
      session.lastPingAt = Date.now();
      const p = (params ?? {}) as { last_rtt_ms?: unknown; watchdog?: unknown };
      if (typeof p.last_rtt_ms === 'number' && Number.isFinite(p.last_rtt_ms) && p.last_rtt_ms >= 0) {
        session.lastRttMs = Math.round(p.last_rtt_ms * 1000) / 1000;
        c.metrics.pingRtt.observe(p.last_rtt_ms / 1000);
      }
      let facts: WatchdogFacts | undefined;
      try {
        facts = p.watchdog === undefined ? undefined : validateWatchdogFacts(p.watchdog);
      } catch {
        facts = undefined; // a malformed report is ignored, the ping still counts
      }
      c.registry.seen(session, facts);
      return { now: Date.now() };
    });
    return session;
  }
}

/**
 * An old session of a client id that connects again is stale (resolves) if it is the same process
 * reconnecting or does not answer a short ping; a live one keeps the id and the newcomer is refused. Also
 * what a node answers when another node of the cluster asks about a session it holds.
 */
export async function checkStale(
  old: ClientSession,
  info: ConnectRequest,
  ip: string,
  checkTimeoutMs: number,
): Promise<void> {
  const sameProcess =
    old.info.pid === info.pid && old.info.processStart === info.processStart && old.info.hostname === info.hostname;
  if (!sameProcess) {
    const rtt = await old.ping(Math.min(checkTimeoutMs, STALE_CHECK_MAX_MS)).catch(() => undefined);
    if (rtt !== undefined) {
      // Two hosts with one id: most often a cloned machine, whose copied machine id is its client id (use_system_id).
      if (old.info.hostname !== info.hostname) {
        throw new Refusal(
          'duplicate',
          `client id "${info.id}" is already connected from host "${old.info.hostname}" (${old.remoteAddress}) and is used by host "${info.hostname}" (${ip}) too: a cloned machine with a duplicate machine id? Give the clone a new machine id (remove /etc/machine-id, run systemd-machine-id-setup, restart rport) or set its [client] id`,
        );
      }
      throw new Refusal(
        'duplicate',
        `client id "${info.id}" is already connected from ${old.remoteAddress} and answered a ping within ${rtt.toFixed(1)}ms: give each client its own [client] id`,
      );
    }
  }
}

/** A registry lookup that fails is the database's fault, not the client's: a refusal that says so. */
function storeDown(err: unknown): never {
  if (err instanceof Refusal) throw err;
  throw new Refusal(
    'unavailable',
    `the server's registry database is out of reach (${errorMessage(err)}): the client retries later`,
  );
}
