/* eslint-disable max-lines -- one connection attempt read top to bottom, one function a step under one clock */
import { lookup } from 'node:dns/promises';
import { isIP, connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, rootCertificates, type TLSSocket } from 'node:tls';
import ssh2 from 'ssh2';
import WebSocket from 'ws';
import type { ServerUrl } from '../config/server-url.js';
import { ControlChannel, type Control } from '../transport/control-channel.js';
import { fingerprintMatches, fingerprintOf } from '../transport/host-key.js';
import { AUTH_ID_HEADER, CONTROL_SUBSYSTEM, WS_SUBPROTOCOL } from '../transport/protocol.js';
import { sshStream } from '../transport/ws-stream.js';
import { RportDialect, speaksRport } from './rport-protocol.js';
import type { StepClock } from '../watchdog/step-clock.js';

export interface DialOptions {
  server: ServerUrl;
  proxy: URL | undefined;
  /** Extra CAs (PEM) trusted for wss:// besides the system store. */
  extraCa: string | undefined;
  headers: Record<string, string>;
  authId: string;
  password: string;
  fingerprint: string;
  /** Bound on the whole attempt; each step gets what is left of it. */
  timeoutMs: number;
}

/** An authenticated SSH session inside a WebSocket, with its control channel open (or RPort's requests). */
export interface Link {
  ssh: ssh2.Client;
  control: Control;
  /** The server is a stock RPort rportd (it spoke RPort's identification line). */
  rport: boolean;
  fingerprint: string;
  close(): void;
}

/** Waits for the first of `ok` or a failure event on an emitter. */
function once<T>(emitter: NodeJS.EventEmitter, ok: string, fail: string[] = ['error']): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const cleanup = () => {
      emitter.off(ok, onOk);
      for (const f of fail) emitter.off(f, onFail);
    };
    const onOk = (v: T) => {
      cleanup();
      resolve(v);
    };
    const onFail = (e: unknown) => {
      cleanup();
      reject(e instanceof Error ? e : new Error(String(e)));
    };
    emitter.on(ok, onOk);
    for (const f of fail) emitter.on(f, onFail);
  });
}

/**
 * HTTP CONNECT through a proxy. Reads the answer with read() rather than 'data' so the socket is left
 * neither paused nor flowing: the next reader (TLS or HTTP) starts it, and no byte is lost in between.
 */
function proxyConnect(sock: Socket, target: ServerUrl, proxy: URL): Promise<void> {
  const auth = proxy.username
    ? `Proxy-Authorization: Basic ${Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64')}\r\n`
    : '';
  const host = isIP(target.host) === 6 ? `[${target.host}]` : target.host;
  sock.write(`CONNECT ${host}:${target.port} HTTP/1.1\r\nHost: ${host}:${target.port}\r\n${auth}\r\n`);
  return new Promise<void>((resolve, reject) => {
    let head = Buffer.alloc(0);
    const done = (err?: Error) => {
      sock.off('readable', onReadable);
      sock.off('end', onEnd);
      sock.off('error', done);
      if (err) reject(err);
      else resolve();
    };
    const onEnd = () => done(new Error('proxy closed the connection before answering CONNECT'));
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = sock.read() as Buffer | null) !== null) {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end >= 0) {
          if (end + 4 < head.length) sock.unshift(head.subarray(end + 4));
          const status = head.subarray(0, head.indexOf('\r\n')).toString('latin1');
          return done(
            /^HTTP\/1\.[01] 2\d\d/.test(status)
              ? undefined
              : new Error(`proxy refused CONNECT to ${target.hostPort}: ${status}`),
          );
        }
        if (head.length > 16384) return done(new Error('proxy answered with an over-long header'));
      }
    };
    sock.on('readable', onReadable);
    sock.on('end', onEnd);
    sock.on('error', done);
  });
}

/** Reads exactly n bytes (read(n) leaves the rest buffered for the next reader, as proxyConnect does). */
function readBytes(sock: Socket, n: number): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const done = (err?: Error, buf?: Buffer) => {
      sock.off('readable', onReadable);
      sock.off('end', onEnd);
      sock.off('error', done);
      if (err) reject(err);
      else resolve(buf!);
    };
    const onEnd = () => done(new Error('proxy closed the connection during the SOCKS5 handshake'));
    const onReadable = () => {
      const b = sock.read(n) as Buffer | null;
      if (b) done(b.length === n ? undefined : new Error('proxy closed the connection during the SOCKS5 handshake'), b);
    };
    sock.on('readable', onReadable);
    sock.on('end', onEnd);
    sock.on('error', done);
    onReadable();
  });
}

const SOCKS5_REPLIES = [
  '',
  'general failure',
  'not allowed by its rules',
  'network unreachable',
  'host unreachable',
  'connection refused',
  'TTL expired',
  'command not supported',
  'address type not supported',
];

/** An IPv6 address as 16 bytes; undefined for forms with an embedded IPv4 part (sent as a name instead). */
function ipv6Bytes(ip: string): Buffer | undefined {
  if (ip.includes('.')) return undefined;
  const [head, tail] = ip.split('::') as [string, string | undefined];
  const words = (t: string | undefined) => (t ? t.split(':').map((w) => parseInt(w, 16)) : []);
  const h = words(head);
  const t = words(tail);
  const all = [...h, ...Array<number>(8 - h.length - t.length).fill(0), ...t];
  const b = Buffer.alloc(16);
  all.forEach((w, i) => b.writeUInt16BE(w, i * 2));
  return b;
}

/**
 * SOCKS5 CONNECT (RFC 1928), with user and password (RFC 1929) when the proxy URL has them. A host name is
 * sent as a name, for the proxy to resolve: the client may not be able to.
 */
async function socks5Connect(sock: Socket, target: ServerUrl, proxy: URL): Promise<void> {
  const user = decodeURIComponent(proxy.username);
  const pass = decodeURIComponent(proxy.password);
  sock.write(Buffer.from(user ? [5, 2, 0, 2] : [5, 1, 0]));
  const [version, method] = await readBytes(sock, 2);
  if (version !== 5) throw new Error(`${proxy.host} is not a SOCKS5 proxy (check [client] proxy)`);
  if (method === 2 && user) {
    const u = Buffer.from(user);
    const p = Buffer.from(pass);
    sock.write(Buffer.concat([Buffer.from([1, u.length]), u, Buffer.from([p.length]), p]));
    const [, status] = await readBytes(sock, 2);
    if (status !== 0) throw new Error(`SOCKS5 proxy ${proxy.host} refused the user and password of [client] proxy`);
  } else if (method !== 0) {
    throw new Error(
      `SOCKS5 proxy ${proxy.host} wants a login${user ? ' of a kind rport does not speak' : ': put user:password@ in [client] proxy'}`,
    );
  }
  const v6 = isIP(target.host) === 6 ? ipv6Bytes(target.host) : undefined;
  const addr =
    isIP(target.host) === 4
      ? Buffer.from([1, ...target.host.split('.').map(Number)])
      : v6
        ? Buffer.concat([Buffer.from([4]), v6])
        : Buffer.concat([Buffer.from([3, Buffer.byteLength(target.host)]), Buffer.from(target.host)]);
  const port = Buffer.alloc(2);
  port.writeUInt16BE(target.port);
  sock.write(Buffer.concat([Buffer.from([5, 1, 0]), addr, port]));
  const [, reply, , atyp] = await readBytes(sock, 4);
  if (reply !== 0)
    throw new Error(
      `SOCKS5 proxy ${proxy.host} could not connect to ${target.hostPort}: ${SOCKS5_REPLIES[reply!] ?? `reply ${reply}`}`,
    );
  // The address the proxy bound, which we do not need, then the tunnel is open.
  const left = atyp === 1 ? 6 : atyp === 4 ? 18 : (await readBytes(sock, 1))[0]! + 2;
  await readBytes(sock, left);
}

/** What a failed DNS lookup or TCP connect means for the user, and which key to check. */
function withHint(err: unknown, target: string, viaProxy: boolean): Error {
  const code = (err as NodeJS.ErrnoException).code;
  const key = viaProxy ? '[client] proxy' : '[client] server';
  const hint =
    code === 'ECONNREFUSED'
      ? `${target} refused the connection (ECONNREFUSED): ${viaProxy ? 'is the proxy running there? check [client] proxy' : "is rportd running and listening there? check [client] server against rportd's [server] address"}`
      : code === 'ENOTFOUND' || code === 'EAI_NONAME'
        ? `${target} is not a known host name: check ${key}`
        : code === 'EAI_AGAIN'
          ? `DNS could not resolve ${target} now (temporary failure): check the DNS server, or ${key}`
          : code === 'EHOSTUNREACH' || code === 'ENETUNREACH'
            ? `no route to ${target}: check the network, or ${key}`
            : undefined;
  return hint ? new Error(hint) : (err as Error);
}

type Closable = { destroy?: () => void; end?: () => void; terminate?: () => void };

/** One attempt's shared state: what is left of its timeout, its step clock, and what to close when it fails. */
class Attempt {
  private readonly end: number;
  private readonly opened: Closable[] = [];

  constructor(
    readonly o: DialOptions,
    private readonly clock: StepClock,
    readonly debug: (m: string) => void,
  ) {
    this.end = performance.now() + o.timeoutMs;
  }

  /** Runs one step under what is left of the attempt's timeout. */
  step<T>(kind: string, what: string, work: () => Promise<T>): Promise<T> {
    return this.clock.run(kind, what, Math.max(1, this.end - performance.now()), work);
  }

  /** Closed, newest first, when the attempt fails or its link is closed. */
  track<T extends Closable>(r: T): T {
    this.opened.push(r);
    return r;
  }

  closeAll(): void {
    for (const r of this.opened.reverse()) {
      try {
        if (r.terminate) r.terminate();
        else if (r.destroy) r.destroy();
        else r.end?.();
      } catch {
        // already closed
      }
    }
  }
}

/** Step dns: the server's (or the proxy's) address; an IP address is used as it is. */
async function resolveHop(a: Attempt, host: string): Promise<string> {
  if (isIP(host)) return host;
  const { address } = await a
    .step('dns', `DNS lookup of ${host}`, () => lookup(host))
    .catch((e) => {
      throw withHint(e, host, !!a.o.proxy);
    });
  a.debug(`${host} resolved to ${address}`);
  return address;
}

/** Step tcp: a connection to the server, or to the proxy when there is one. */
async function connectTcp(a: Attempt, host: string, port: number): Promise<Socket> {
  const tcp = a.track(netConnect({ host, port }));
  tcp.setNoDelay(true);
  await a
    .step('tcp', `TCP connect to ${host}:${port}`, () => once(tcp, 'connect'))
    .catch((e) => {
      throw withHint(e, `${host}:${port}`, !!a.o.proxy);
    });
  return tcp;
}

/** Step proxy: HTTP CONNECT or SOCKS5 to the server through [client] proxy. */
function throughProxy(a: Attempt, tcp: Socket, proxy: URL): Promise<void> {
  const socks = proxy.protocol.startsWith('socks5');
  return a.step('proxy', `proxy ${socks ? 'SOCKS5' : 'CONNECT'} through ${proxy.host}`, () =>
    (socks ? socks5Connect : proxyConnect)(tcp, a.o.server, proxy),
  );
}

/** Step tls (wss:// only): the handshake, verified against the system store and [client] tls_ca. */
async function startTls(a: Attempt, tcp: Socket): Promise<TLSSocket> {
  const { server, extraCa } = a.o;
  const tls = a.track(
    tlsConnect({
      socket: tcp,
      servername: isIP(server.host) ? undefined : server.host,
      ca: extraCa ? [...rootCertificates, extraCa] : undefined,
    }),
  );
  await a.step('tls', `TLS handshake with ${server.hostPort}`, () => once(tls, 'secureConnect'));
  return tls;
}

/** Step websocket: the upgrade, with rportd's reason when it refuses; returns the stream SSH runs on. */
async function upgradeToWebSocket(a: Attempt, sock: Socket | TLSSocket): Promise<ReturnType<typeof sshStream>> {
  const { server, headers, authId } = a.o;
  const ws = a.track(
    new WebSocket(server.href, WS_SUBPROTOCOL, {
      createConnection: () => sock,
      perMessageDeflate: false,
      headers: { ...headers, [AUTH_ID_HEADER]: encodeURIComponent(authId) },
      maxPayload: 4 << 20,
      // A zero mask lets ws skip masking here and unmasking at the server (one pass over every byte each).
      // Masking keeps a browser page's chosen bytes from poisoning proxy caches; these bytes are SSH's own,
      // encrypted after the key exchange, and no page chooses them.
      generateMask: (mask) => void mask.fill(0),
    }),
  );
  // Wrapped at once, not after 'open': the server's first SSH bytes can arrive with the HTTP 101 and
  // are emitted before an await after 'open' would resume. The stream queues writes until open.
  const wsStream = sshStream(ws);
  // RPort's server answers 101 without the subprotocol, which ws would refuse: the dialect is told by the
  // server's SSH identification line instead (rport-protocol.ts), and a subprotocol it names is still checked.
  ws.once('upgrade', (res) => {
    res.headers['sec-websocket-protocol'] ??= WS_SUBPROTOCOL;
  });
  const upgradeFailed = new Promise<never>((_, reject) => {
    ws.once('unexpected-response', (_req, res) => {
      const own = res.headers['x-rport-error'];
      const why = own ?? res.statusMessage ?? '';
      // Without rportd's own reason header, something else answered: most often the API's port.
      const hint = own
        ? ''
        : `: ${server.hostPort} is not rportd's client port (the API, a web server or a proxy answered): set [client] server to rportd's [server] address`;
      reject(
        new Error(`server answered the WebSocket upgrade with HTTP ${res.statusCode}${why ? ` (${why})` : ''}${hint}`),
      );
    });
  });
  await a.step('websocket', `WebSocket upgrade at ${server.href}`, () =>
    Promise.race([once(ws, 'open'), upgradeFailed]),
  );
  return wsStream;
}

/**
 * Step ssh: the key exchange, the host key checked against [client] fingerprint, and the password login
 * (ssh2 reports them as one 'ready'); a refused key or login becomes the line that names the key to fix.
 */
async function sshLogin(
  a: Attempt,
  stream: ReturnType<typeof sshStream>,
): Promise<{ ssh: ssh2.Client; fingerprint: string }> {
  const { authId, password, fingerprint } = a.o;
  const ssh = a.track(new ssh2.Client());
  let seenFingerprint = '';
  let refusedKey = false;
  ssh.connect({
    sock: stream,
    username: authId,
    password,
    readyTimeout: 0, // bounded by the step below
    keepaliveInterval: 0, // keep-alive is ours, on the control channel
    hostVerifier: (key: Buffer) => {
      seenFingerprint = fingerprintOf(key);
      refusedKey = !!fingerprint && !fingerprintMatches(fingerprint, key);
      return !refusedKey;
    },
  } as ssh2.ConnectConfig);
  try {
    await a.step('ssh', `SSH handshake and auth as ${authId}`, () => once(ssh, 'ready'));
  } catch (err) {
    if (refusedKey) {
      throw new Error(
        `server host key ${seenFingerprint} does not match [client] fingerprint = "${fingerprint}": refusing to connect (check the server's fingerprint in its start-up log)`,
        { cause: err },
      );
    }
    if ((err as { level?: string }).level === 'client-authentication') {
      throw new Error(
        `authentication failed: the server refused id "${authId}" and its password (check [client] auth)`,
        { cause: err },
      );
    }
    throw err;
  }
  // From here a broken link is seen by its 'close' (the client's serve loop): an 'error' without a listener
  // (a write after the server hung up: EPIPE) would otherwise end the process.
  ssh.on('error', (err) => a.debug(`SSH connection: ${err.message}`));
  return { ssh, fingerprint: seenFingerprint };
}

/** Step control: the control channel (a subsystem) that carries pings and the connection request. */
async function openControlChannel(a: Attempt, ssh: ssh2.Client): Promise<Control> {
  // A stock RPort server has no control channel: its requests are SSH global requests.
  if (speaksRport(ssh)) return new RportDialect(ssh, a.debug);
  const stream = await a.step(
    'control',
    'opening the control channel',
    () =>
      new Promise<ssh2.ClientChannel>((resolve, reject) => {
        ssh.subsys(CONTROL_SUBSYSTEM, (err, ch) => (err ? reject(err) : resolve(ch)));
      }),
  );
  return new ControlChannel(stream);
}

/**
 * One connection attempt, step by step, each step bounded by what is left of the attempt's timeout:
 * DNS, TCP, proxy CONNECT, TLS, WebSocket upgrade, SSH handshake and auth, control channel. The
 * connection request that follows is the connection loop's (client.ts).
 */
export async function dial(o: DialOptions, clock: StepClock, debug: (m: string) => void): Promise<Link> {
  const a = new Attempt(o, clock, debug);
  try {
    const hop = o.proxy
      ? { host: o.proxy.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(o.proxy.port || 80) }
      : o.server;
    const tcp = await connectTcp(a, await resolveHop(a, hop.host), hop.port);
    if (o.proxy) await throughProxy(a, tcp, o.proxy);
    const sock = o.server.secure ? await startTls(a, tcp) : tcp;
    const { ssh, fingerprint } = await sshLogin(a, await upgradeToWebSocket(a, sock));
    const control = await openControlChannel(a, ssh);
    return {
      ssh,
      control,
      rport: control instanceof RportDialect,
      fingerprint,
      close: () => {
        control.close();
        a.closeAll();
      },
    };
  } catch (err) {
    a.closeAll();
    throw err;
  }
}
