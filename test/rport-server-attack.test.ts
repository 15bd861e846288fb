import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import ssh2 from 'ssh2';
import { WebSocketServer } from 'ws';
import { loadHostKey } from '../src/transport/host-key.js';
import { RPORT_IDENT } from '../src/transport/protocol.js';
import { sshStream } from '../src/transport/ws-stream.js';
import { cleanup, startClient, type Proc } from '../harness/procs.js';

// A hostile server that speaks RPort's protocol (its identification line, its requests and channels), as an
// attacker in control of an RPort server would, against the real rport client.

type Conn = ssh2.Connection & {
  globalRequest(name: string, data: Buffer | undefined, cb: (ok: boolean, data: Buffer | null) => void): void;
  openChannel(type: string, data: Buffer, cb: (err: Error | undefined, ch: ssh2.Channel) => void): void;
};

/** A WebSocket + SSH server announcing itself as RPort's; `onRequest` answers the client's requests. */
async function rportServer(
  t: TestContext,
  onRequest: (name: string, data: Buffer | undefined, accept: (b?: Buffer) => void) => void,
): Promise<{ port: number; connected: Promise<Conn> }> {
  const key = loadHostKey('', 'hostile-rport-server').privateKey;
  let connected!: (c: Conn) => void;
  const ready = new Promise<Conn>((r) => (connected = r));
  const ssh = new ssh2.Server({ hostKeys: [key], ident: RPORT_IDENT.server }, (client) => {
    client.on('authentication', (ctx) => ctx.accept());
    client.on('error', () => undefined);
    client.on('request', ((accept: (b?: Buffer) => void, _reject: unknown, name: string, data: Buffer | undefined) => {
      if (name === 'new_connection') connected(client as Conn);
      onRequest(name, data, accept);
    }) as never);
  });
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  // As RPort's server: the 101 names no subprotocol.
  wss.on('connection', (ws) => ssh.injectSocket(sshStream(ws) as never));
  await new Promise((r) => wss.once('listening', r));
  cleanup(
    t,
    () =>
      new Promise((r) => {
        for (const c of wss.clients) c.terminate();
        wss.close(r);
      }),
  );
  return { port: (wss.address() as AddressInfo).port, connected: ready };
}

test('a server that never answers the connection request: the attempt ends at connect_timeout, names the step, and is retried', async (t) => {
  const server = await rportServer(t, () => undefined);
  const client: Proc = startClient(t, `127.0.0.1:${server.port}`, ['--connect-timeout', '2s']);
  await client.waitFor(/attempt 1 to 127\.0\.0\.1:\d+ failed: new_connection request timed out after \S+/, 30_000);
  await client.waitFor(/Retrying in/, 10_000);
});
