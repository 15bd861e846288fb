import { connect as netConnect, type Socket } from 'node:net';
import ssh2 from 'ssh2';
import WebSocket from 'ws';
import { dial, type Link } from '../../src/client/dial.js';
import { StepClock } from '../../src/watchdog/step-clock.js';
import { parseServerUrl } from '../../src/config/server-url.js';
import { METHOD, WS_SUBPROTOCOL, type ConnectReply, type ConnectRequest } from '../../src/transport/protocol.js';
import { sshStream } from '../../src/transport/ws-stream.js';

/**
 * An SSH client inside rport's WebSocket that does what the test tells it, not what rport does: the
 * hostile peer of the security tests. `authHandler` is ssh2's: return the next attempt, or false to stop.
 */
export function rawSsh(
  port: number,
  username: string,
  authHandler: ssh2.AuthHandlerMiddleware | ssh2.AuthenticationType[],
  headers: Record<string, string> = {},
  localAddress?: string,
): { ssh: ssh2.Client; ws: WebSocket; closed: Promise<void> } {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`, WS_SUBPROTOCOL, {
    perMessageDeflate: false,
    headers,
    localAddress,
  });
  const ssh = new ssh2.Client();
  ssh.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => {
    ssh.on('close', () => resolve());
    ws.on('error', () => resolve());
  });
  ws.on('open', () =>
    ssh.connect({ sock: sshStream(ws), username, authHandler, readyTimeout: 0 } as ssh2.ConnectConfig),
  );
  return { ssh, ws, closed };
}

/** Resets a WebSocket's TCP connection (RST), as a peer that vanishes does. */
export function resetWs(ws: WebSocket): void {
  const socket = (ws as unknown as { _socket?: Socket })._socket;
  if (socket) socket.resetAndDestroy();
  else ws.terminate();
}

/** A logged-in rport link that sends the connection request the test chooses, answering pings like a client. */
export async function rawLink(port: number, auth: string, timeoutMs = 5000): Promise<Link> {
  const i = auth.indexOf(':');
  const link = await dial(
    {
      server: parseServerUrl(`127.0.0.1:${port}`)!,
      proxy: undefined,
      extraCa: undefined,
      headers: {},
      authId: auth.slice(0, i),
      password: auth.slice(i + 1),
      fingerprint: '',
      timeoutMs,
    },
    new StepClock(),
    () => undefined,
  );
  link.control.handle(METHOD.ping, () => ({ now: Date.now() }));
  return link;
}

export function connectRequest(id: string, pid: number, extra: Partial<ConnectRequest> = {}): ConnectRequest {
  return {
    id,
    name: id,
    tags: [],
    hostname: 'test-host',
    os: 'linux',
    arch: 'x64',
    version: 'test',
    pid,
    processStart: 1_700_000_000_000 + pid,
    remotes: [],
    ...extra,
  };
}

export function requestConnect(link: Link, request: ConnectRequest, timeoutMs = 10_000): Promise<ConnectReply> {
  return link.control.request<ConnectReply>(METHOD.connect, request, timeoutMs);
}

/** The WebSocket upgrade request an rport client sends, with the test's header changes (a value '' drops the header). */
export function upgradeRequest(port: number, headers: Record<string, string> = {}): string {
  const all: Record<string, string> = {
    Host: `127.0.0.1:${port}`,
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Protocol': WS_SUBPROTOCOL,
    ...headers,
  };
  return `GET / HTTP/1.1\r\n${Object.entries(all)
    .filter(([, v]) => v !== '')
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`;
}

/**
 * A peer that writes `bytes` and then resets the connection (TCP RST): at once, or once the server has
 * answered (`after: 'answer'`, or the first 10 s, whichever comes first). Resolves when the socket is gone.
 */
export function sendAndReset(
  port: number,
  bytes: string | Buffer,
  o: { from?: string; after?: 'write' | 'answer' } = {},
): Promise<void> {
  return new Promise((resolve) => {
    const s = netConnect({ port, host: '127.0.0.1', localAddress: o.from }, () => {
      s.write(bytes);
      if (o.after !== 'answer') return void s.resetAndDestroy();
      const bound = setTimeout(() => s.resetAndDestroy(), 10_000);
      s.once('data', () => {
        clearTimeout(bound);
        s.resetAndDestroy();
      });
    });
    s.on('error', () => undefined);
    s.once('close', () => resolve());
  });
}
