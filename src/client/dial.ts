import { lookup } from 'node:dns/promises';
import { isIP, connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, rootCertificates, type TLSSocket } from 'node:tls';
import ssh2 from 'ssh2';
import WebSocket from 'ws';
import type { ServerUrl } from '../config/server-url.js';
import { ControlChannel } from '../transport/control-channel.js';
import { fingerprintMatches, fingerprintOf } from '../transport/host-key.js';
import { AUTH_ID_HEADER, CONTROL_SUBSYSTEM, WS_SUBPROTOCOL } from '../transport/protocol.js';
import { sshStream } from '../transport/ws-stream.js';
import type { StepClock } from './step-clock.js';

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

/** An authenticated SSH session inside a WebSocket, with its control channel open. */
export interface Link {
  ssh: ssh2.Client;
  control: ControlChannel;
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
    const onOk = (v: T) => { cleanup(); resolve(v); };
    const onFail = (e: unknown) => { cleanup(); reject(e instanceof Error ? e : new Error(String(e))); };
    emitter.on(ok, onOk);
    for (const f of fail) emitter.on(f, onFail);
  });
}

/**
 * HTTP CONNECT through a proxy. Reads the answer with read() rather than 'data' so the socket is left
 * neither paused nor flowing: the next reader (TLS or HTTP) starts it, and no byte is lost in between.
 */
function proxyConnect(sock: Socket, target: ServerUrl, proxy: URL): Promise<void> {
  const auth = proxy.username ? `Proxy-Authorization: Basic ${Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64')}\r\n` : '';
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
          return done(/^HTTP\/1\.[01] 2\d\d/.test(status) ? undefined : new Error(`proxy refused CONNECT to ${target.hostPort}: ${status}`));
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

const SOCKS5_REPLIES = ['', 'general failure', 'not allowed by its rules', 'network unreachable', 'host unreachable', 'connection refused',
  'TTL expired', 'command not supported', 'address type not supported'];

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
    throw new Error(`SOCKS5 proxy ${proxy.host} wants a login${user ? ' of a kind rport does not speak' : ': put user:password@ in [client] proxy'}`);
  }
  const v6 = isIP(target.host) === 6 ? ipv6Bytes(target.host) : undefined;
  const addr = isIP(target.host) === 4 ? Buffer.from([1, ...target.host.split('.').map(Number)])
    : v6 ? Buffer.concat([Buffer.from([4]), v6])
    : Buffer.concat([Buffer.from([3, Buffer.byteLength(target.host)]), Buffer.from(target.host)]);
  const port = Buffer.alloc(2);
  port.writeUInt16BE(target.port);
  sock.write(Buffer.concat([Buffer.from([5, 1, 0]), addr, port]));
  const [, reply, , atyp] = await readBytes(sock, 4);
  if (reply !== 0) throw new Error(`SOCKS5 proxy ${proxy.host} could not connect to ${target.hostPort}: ${SOCKS5_REPLIES[reply!] ?? `reply ${reply}`}`);
  // The address the proxy bound, which we do not need, then the tunnel is open.
  const left = atyp === 1 ? 6 : atyp === 4 ? 18 : (await readBytes(sock, 1))[0]! + 2;
  await readBytes(sock, left);
}

/** What a failed DNS lookup or TCP connect means for the user, and which key to check. */
function withHint(err: unknown, target: string, viaProxy: boolean): Error {
  const code = (err as NodeJS.ErrnoException).code;
  const key = viaProxy ? '[client] proxy' : '[client] server';
  const hint = code === 'ECONNREFUSED'
    ? `${target} refused the connection (ECONNREFUSED): ${viaProxy ? 'is the proxy running there? check [client] proxy' : "is rportd running and listening there? check [client] server against rportd's [server] address"}`
    : code === 'ENOTFOUND' || code === 'EAI_NONAME' ? `${target} is not a known host name: check ${key}`
    : code === 'EAI_AGAIN' ? `DNS could not resolve ${target} now (temporary failure): check the DNS server, or ${key}`
    : code === 'EHOSTUNREACH' || code === 'ENETUNREACH' ? `no route to ${target}: check the network, or ${key}`
    : undefined;
  return hint ? new Error(hint) : (err as Error);
}

/**
 * One connection attempt, step by step, each step bounded by what is left of the attempt's timeout:
 * DNS, TCP, proxy CONNECT, TLS, WebSocket upgrade, SSH handshake and auth, control channel.
 */
export async function dial(o: DialOptions, clock: StepClock, debug: (m: string) => void): Promise<Link> {
  const end = performance.now() + o.timeoutMs;
  const left = () => Math.max(1, end - performance.now());
  const toClose: Array<{ destroy?: () => void; end?: () => void; terminate?: () => void }> = [];
  const closeAll = () => {
    for (const r of toClose.reverse()) {
      try {
        if (r.terminate) r.terminate();
        else if (r.destroy) r.destroy();
        else r.end?.();
      } catch {
        // already closed
      }
    }
  };

  try {
    const hop = o.proxy ? { host: o.proxy.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(o.proxy.port || 80) } : o.server;
    let address = hop.host;
    if (!isIP(hop.host)) {
      address = (await clock.run('dns', `DNS lookup of ${hop.host}`, left(), () => lookup(hop.host)).catch((e) => { throw withHint(e, hop.host, !!o.proxy); })).address;
      debug(`${hop.host} resolved to ${address}`);
    }

    const tcp = netConnect({ host: address, port: hop.port });
    toClose.push(tcp);
    tcp.setNoDelay(true);
    await clock.run('tcp', `TCP connect to ${address}:${hop.port}`, left(), () => once(tcp, 'connect')).catch((e) => { throw withHint(e, `${address}:${hop.port}`, !!o.proxy); });
    let sock: Socket | TLSSocket = tcp;

    if (o.proxy) {
      const socks = o.proxy.protocol.startsWith('socks5');
      await clock.run('proxy', `proxy ${socks ? 'SOCKS5' : 'CONNECT'} through ${o.proxy.host}`, left(), () => (socks ? socks5Connect : proxyConnect)(tcp, o.server, o.proxy!));
    }

    if (o.server.secure) {
      const tls = tlsConnect({
        socket: tcp,
        servername: isIP(o.server.host) ? undefined : o.server.host,
        ca: o.extraCa ? [...rootCertificates, o.extraCa] : undefined,
      });
      toClose.push(tls);
      await clock.run('tls', `TLS handshake with ${o.server.hostPort}`, left(), () => once(tls, 'secureConnect'));
      sock = tls;
    }

    const ws = new WebSocket(o.server.href, WS_SUBPROTOCOL, {
      createConnection: () => sock,
      perMessageDeflate: false,
      headers: { ...o.headers, [AUTH_ID_HEADER]: encodeURIComponent(o.authId) },
      maxPayload: 4 << 20,
      // A zero mask lets ws skip masking here and unmasking at the server (one pass over every byte each).
      // Masking keeps a browser page's chosen bytes from poisoning proxy caches; these bytes are SSH's own,
      // encrypted after the key exchange, and no page chooses them.
      generateMask: (mask) => void mask.fill(0),
    });
    toClose.push(ws);
    // Wrapped at once, not after 'open': the server's first SSH bytes can arrive with the HTTP 101 and
    // are emitted before an await after 'open' would resume. The stream queues writes until open.
    const wsStream = sshStream(ws);
    const upgradeFailed = new Promise<never>((_, reject) => {
      ws.once('unexpected-response', (_req, res) => {
        const own = res.headers['x-rport-error'];
        const why = own ?? res.statusMessage ?? '';
        // Without rportd's own reason header, something else answered: most often the API's port.
        const hint = own ? '' : `: ${o.server.hostPort} is not rportd's client port (the API, a web server or a proxy answered): set [client] server to rportd's [server] address`;
        reject(new Error(`server answered the WebSocket upgrade with HTTP ${res.statusCode}${why ? ` (${why})` : ''}${hint}`));
      });
    });
    await clock.run('websocket', `WebSocket upgrade at ${o.server.href}`, left(), () => Promise.race([once(ws, 'open'), upgradeFailed]));

    const ssh = new ssh2.Client();
    toClose.push(ssh);
    let seenFingerprint = '';
    let refusedKey = false;
    ssh.connect({
      sock: wsStream,
      username: o.authId,
      password: o.password,
      readyTimeout: 0, // bounded by the step below
      keepaliveInterval: 0, // keep-alive is ours, on the control channel
      hostVerifier: (key: Buffer) => {
        seenFingerprint = fingerprintOf(key);
        refusedKey = !!o.fingerprint && !fingerprintMatches(o.fingerprint, key);
        return !refusedKey;
      },
    } as ssh2.ConnectConfig);
    try {
      await clock.run('ssh', `SSH handshake and auth as ${o.authId}`, left(), () => once(ssh, 'ready'));
    } catch (err) {
      if (refusedKey) {
        throw new Error(`server host key ${seenFingerprint} does not match [client] fingerprint = "${o.fingerprint}": refusing to connect (check the server's fingerprint in its start-up log)`);
      }
      if ((err as { level?: string }).level === 'client-authentication') {
        throw new Error(`authentication failed: the server refused id "${o.authId}" and its password (check [client] auth)`);
      }
      throw err;
    }

    // From here a broken link is seen by its 'close' (the client's serve loop): an 'error' without a listener
    // (a write after the server hung up: EPIPE) would otherwise end the process.
    ssh.on('error', (err) => debug(`SSH connection: ${err.message}`));

    const stream = await clock.run('control', 'opening the control channel', left(), () => new Promise<ssh2.ClientChannel>((resolve, reject) => {
      ssh.subsys(CONTROL_SUBSYSTEM, (err, ch) => (err ? reject(err) : resolve(ch)));
    }));
    const control = new ControlChannel(stream);
    return { ssh, control, fingerprint: seenFingerprint, close: () => { control.close(); closeAll(); } };
  } catch (err) {
    closeAll();
    throw err;
  }
}
