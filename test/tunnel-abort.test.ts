import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { freePort, patient, startClient, startServer, target, API_AUTH, type ServerHandle } from '../harness/procs.js';

const connected = /INFO {2}client: connected to (\S+) within/;

async function tunnel(server: ServerHandle, client: string, remotePort: number): Promise<number> {
  const r = await server.api(
    `/api/v1/clients/${client}/tunnels?remote=127.0.0.1:${remotePort}&local=127.0.0.1:0`,
    API_AUTH,
    'PUT',
  );
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return Number(r.body.data.local.split(':').pop());
}

/** How a user's connection to the tunnel ended: "end" (a clean FIN) or the error code, and the bytes it got. */
function download(
  port: number,
  onFirstData?: () => void,
): { sock: Socket; done: Promise<{ how: string; bytes: number }> } {
  const sock = connect(port, '127.0.0.1');
  let bytes = 0;
  const done = new Promise<{ how: string; bytes: number }>((resolve) => {
    sock.on('data', (b) => {
      if (bytes === 0) onFirstData?.();
      bytes += b.length;
    });
    sock.once('end', () => resolve({ how: 'end', bytes }));
    sock.once('error', (err: NodeJS.ErrnoException) => resolve({ how: err.code ?? err.message, bytes }));
    sock.once('close', () => resolve({ how: 'close without end or error', bytes }));
    sock.setTimeout(patient(20_000), () => resolve({ how: 'timeout', bytes }));
  });
  done.then(() => sock.destroy());
  return { sock, done };
}

async function setup(t: TestContext, id: string, onConn: (s: Socket) => void) {
  const port = await target(t, onConn);
  const server = await startServer(t);
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--id', id]);
  await client.waitFor(connected);
  return { server, client, port: await tunnel(server, id, port) };
}

test('a target that resets mid-download: the user gets a reset, not a clean end (a truncated download must not look complete)', async (t) => {
  const part = Buffer.alloc(200 * 1024, 7);
  let targetSock: Socket | undefined;
  const { port } = await setup(t, 'abort-target', (s) => {
    targetSock = s;
    s.write(part);
  });
  // The target dies once the user has the first part (a reset in flight with unread data can look like a
  // FIN on some network stacks, which would test those, not rport).
  let got = 0;
  const d = download(port);
  d.sock.on('data', (b) => {
    got += b.length;
    if (got === part.length) targetSock!.resetAndDestroy();
  });
  const r = await d.done;
  assert.equal(r.how, 'ECONNRESET', `the user's connection ended with "${r.how}" after ${r.bytes} bytes`);
});

test('a clean end still delivers every byte and a FIN, not a reset', async (t) => {
  const whole = Buffer.alloc(1024 * 1024, 9);
  const { port } = await setup(t, 'clean-target', (s) => s.end(whole));
  const r = await download(port).done;
  assert.deepEqual(r, { how: 'end', bytes: whole.length });
});

test("a killed client: the user's open connection is reset", async (t) => {
  const { port, client } = await setup(t, 'killed', (s) => s.write('first bytes'));
  const d = download(port, () => client.kill('SIGKILL'));
  const r = await d.done;
  assert.equal(r.how, 'ECONNRESET', `the user's connection ended with "${r.how}"`);
});

test("a target that refuses the connection: the user's connection is reset", async (t) => {
  const server = await startServer(t);
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'refused']);
  await client.waitFor(connected);
  const port = await tunnel(server, 'refused', await freePort());
  const r = await download(port).done;
  assert.equal(r.how, 'ECONNRESET', `the user's connection ended with "${r.how}"`);
});

test('a user that aborts: the target sees a reset, not a clean end', async (t) => {
  let seen: (how: string) => void;
  const targetSaw = new Promise<string>((r) => (seen = r));
  const { port } = await setup(t, 'abort-user', (s) => {
    s.once('end', () => seen('end'));
    s.once('error', (err: NodeJS.ErrnoException) => seen(err.code ?? err.message));
    s.write('hello', () => undefined);
  });
  const user: Socket = download(port, () => user.resetAndDestroy()).sock;
  const bound = patient(15_000);
  const timeout = new Promise<string>((r) => setTimeout(() => r(`nothing within ${bound}ms`), bound).unref());
  assert.equal(await Promise.race([targetSaw, timeout]), 'ECONNRESET');
});
