// rportd against peers that speak RPort's protocol (as a stock RPort client does) but ask for what RPort's
// server gave and rportd does not: channels that make the server dial, unknown requests, floods, malformed
// connection requests. Real sockets on 127.0.0.1, rportd in the test's process.
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import test, { type TestContext } from 'node:test';
import ssh2 from 'ssh2';
import WebSocket from 'ws';
import { RPORT_IDENT, WS_SUBPROTOCOL } from '../src/transport/protocol.js';
import { sshStream } from '../src/transport/ws-stream.js';
import { startServerInProcess } from './helpers/in-process.js';
import { CLIENT_AUTH, cleanup, eventually, patient, type AnyServer } from '../harness/procs.js';

const LIMIT = { timeout: patient(120_000) };
const [USER, PASSWORD] = CLIENT_AUTH.split(':') as [string, string];

/** What the ssh2 patch adds to a client: requests and channels of any name. */
interface Rport {
  globalRequest(name: string, data: Buffer | undefined, cb?: (ok: boolean, data: Buffer | null) => void): void;
  openChannel(type: string, data: Buffer, cb: (err: Error | undefined, channel: ssh2.Channel) => void): void;
}

/** A logged-in SSH connection that identifies itself as RPort's client does; the test says what it sends. */
async function stockPeer(
  t: test.TestContext,
  port: number,
): Promise<{
  ssh: ssh2.Client & Rport;
  closed: Promise<void>;
  ask(name: string, body: unknown): Promise<{ ok: boolean; text: string }>;
}> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`, WS_SUBPROTOCOL, { perMessageDeflate: false });
  const ssh = new ssh2.Client() as ssh2.Client & Rport;
  ssh.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => ssh.on('close', () => resolve()));
  cleanup(t, () => ssh.end());
  await new Promise<void>((resolve, reject) => {
    ws.on('error', reject);
    ssh.once('ready', () => resolve());
    ws.on('open', () =>
      ssh.connect({
        sock: sshStream(ws),
        username: USER,
        password: PASSWORD,
        ident: RPORT_IDENT.client,
        readyTimeout: 10_000,
      } as ssh2.ConnectConfig),
    );
  });
  const ask = (name: string, body: unknown) =>
    new Promise<{ ok: boolean; text: string }>((resolve) => {
      ssh.globalRequest(name, Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)), (ok, data) =>
        resolve({ ok, text: data?.toString() ?? '' }),
      );
    });
  return { ssh, closed, ask };
}

const connection = (id: string, extra: Record<string, unknown> = {}) => ({
  ID: id,
  Name: id,
  SessionID: `session-${id}`,
  OS: 'Linux',
  OSArch: 'amd64',
  Version: '0.9.13',
  Hostname: 'stock-host',
  Tags: [],
  Remotes: null,
  ...extra,
});

async function metric(server: AnyServer, name: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${server.apiPort}/metrics`, {
    headers: { authorization: `Basic ${Buffer.from('admin:apipass').toString('base64')}` },
  });
  const m = new RegExp(`^${name.replace(/[{}"]/g, '\\$&')} (\\d+)$`, 'm').exec(await res.text());
  return m ? Number(m[1]) : 0;
}

test(
  "a stock client's channel that names host:port (RPort's server dialed it) is refused, logged and counted; the target sees nothing",
  LIMIT,
  async (t) => {
    const server = await startServerInProcess(t);
    let dialed = 0;
    const inside = createServer((s) => {
      dialed++;
      s.destroy();
    });
    await new Promise<void>((r) => inside.listen(0, '127.0.0.1', r));
    cleanup(t, () => new Promise((r) => inside.close(() => r(undefined))));
    const target = `127.0.0.1:${(inside.address() as AddressInfo).port}`;

    const peer = await stockPeer(t, server.port);
    const answer = await peer.ask('new_connection', connection('hostile'));
    assert.deepEqual(answer, { ok: true, text: '[]' });
    for (const type of ['rport', 'direct-tcpip-ish', 'session2']) {
      const err = await new Promise<Error | undefined>((resolve) =>
        peer.ssh.openChannel(type, Buffer.from(target), (e, ch) => {
          ch?.close();
          resolve(e);
        }),
      );
      assert.ok(err, `a channel of type ${type} was accepted`);
      await server.proc.waitFor(
        new RegExp(
          `refused ${type} channel from client hostile \\(127\\.0\\.0\\.1\\): channels of type "${type}" are not taken`,
        ),
      );
    }
    assert.equal(dialed, 0, 'rportd dialed the address a client named');
    assert.equal(await metric(server, 'rport_client_messages_refused_total{kind="rport channel"}'), 1);
    // A result for a job that is not this client's is not taken (as an rport client's would not be).
    peer.ssh.globalRequest(
      'cmd_result',
      Buffer.from(JSON.stringify({ jid: 'not-my-job', status: 'successful', result: { stdout: 'forged' } })),
    );
    await server.proc.waitFor(
      /refused cmd_result from client hostile \(127\.0\.0\.1\): the result of job not-my-job is not taken: job not-my-job is not one of this client's jobs awaiting a result/,
    );
    const unknown = await peer.ask('some_request', {});
    assert.deepEqual(unknown, { ok: false, text: 'unknown request' });
    assert.equal(
      (await server.api('/api/v1/clients/hostile')).body.data.connected,
      true,
      'refusals alone do not end the connection',
    );
  },
);

test(
  "a stock client's malformed connection requests are refused with the reason it shows; a second one is told to reconnect",
  LIMIT,
  async (t) => {
    const server = await startServerInProcess(t);
    const notJson = await stockPeer(t, server.port);
    assert.deepEqual(await notJson.ask('new_connection', '{not json'), {
      ok: false,
      text: 'the connection request is not JSON',
    });
    await notJson.closed;
    await server.proc.waitFor(
      /refused a connection request from 127\.0\.0\.1 as client1: the connection request is not JSON/,
    );
    const tooMany = await stockPeer(t, server.port);
    const r = await tooMany.ask(
      'new_connection',
      connection('tags', { Tags: Array.from({ length: 101 }, (_, i) => `t${i}`) }),
    );
    assert.equal(r.ok, false);
    assert.match(r.text, /connection request field "Tags" must be a list of at most 100 strings/);

    const twice = await stockPeer(t, server.port);
    assert.equal((await twice.ask('new_connection', connection('twice'))).ok, true);
    assert.deepEqual(await twice.ask('new_connection', connection('twice')), {
      ok: false,
      text: 'unexpected connection request. please reconnect',
    });
    await twice.closed;
  },
);

test('a stock client that floods requests is disconnected', LIMIT, async (t) => {
  const server = await startServerInProcess(t);
  const peer = await stockPeer(t, server.port);
  assert.equal((await peer.ask('new_connection', connection('flood'))).ok, true);
  for (let i = 0; i < 5000; i++) peer.ssh.globalRequest('ping', undefined);
  await peer.closed;
  await server.proc.waitFor(
    /refused ping from client flood \(127\.0\.0\.1\): more than 200 requests a second: closing the connection/,
  );
  await eventually(
    async () => ((await server.api('/api/v1/clients/flood')).body.data.connected === false ? true : undefined),
    10_000,
    'the flooder shown disconnected',
  );
});

/** An rportd and a WebSocket opened to its client port, on which the test writes raw bytes as the peer. */
async function rawPeer(
  t: TestContext,
): Promise<{ server: Awaited<ReturnType<typeof startServerInProcess>>; ws: WebSocket }> {
  const server = await startServerInProcess(t);
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/`, WS_SUBPROTOCOL, { perMessageDeflate: false });
  cleanup(t, () => ws.terminate());
  await new Promise<void>((resolve, reject) => {
    ws.on('open', () => resolve());
    ws.on('error', reject);
  });
  return { server, ws };
}

test(
  'a peer whose first line is not an SSH identification line is refused and logged with its address',
  LIMIT,
  async (t) => {
    const { server, ws } = await rawPeer(t);
    ws.send(Buffer.from('SSH-rport-v9-client\r\n'));
    await server.proc.waitFor(
      /refused a connection from 127\.0\.0\.1 at the identification line: it sent "SSH-rport-v9-client"/,
    );
    await new Promise<void>((resolve) => ws.once('close', () => resolve()));
  },
);

test(
  'a peer whose SSH breaks during the key exchange is refused and logged with its address and the step',
  LIMIT,
  async (t) => {
    const { server, ws } = await rawPeer(t);
    ws.send(Buffer.from('SSH-2.0-broken\r\n'));
    // A packet whose length field no SSH packet has.
    ws.send(Buffer.from([0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 0, 0, 0, 0, 0]));
    await server.proc.waitFor(/refused a connection from 127\.0\.0\.1 at the key exchange: /);
    await new Promise<void>((resolve) => ws.once('close', () => resolve()));
  },
);
