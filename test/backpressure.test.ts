import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { cleanup, eventually, startClient, startServer, API_AUTH } from '../harness/procs.js';

const MiB = 1 << 20;
const rssBytes = (pid: number) =>
  Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;

/** `target` listening, rportd, a client `id` with long keep-alives (it gets stopped), and a tunnel to the target. */
async function tunnelTo(t: TestContext, id: string, target: Server) {
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  cleanup(t, () => new Promise((r) => target.close(() => r(undefined))));
  const server = await startServer(t);
  const client = startClient(t, `127.0.0.1:${server.port}`, [
    '--id',
    id,
    '--keep-alive',
    '3m',
    '--keep-alive-timeout',
    '1m',
  ]);
  await client.waitFor(/INFO {2}client: connected to/);
  const r = await server.api(
    `/api/v1/clients/${id}/tunnels?remote=127.0.0.1:${(target.address() as AddressInfo).port}`,
    API_AUTH,
    'PUT',
  );
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return { server, client, port: Number(r.body.data.local.split(':').pop()) };
}

// A client that stops reading (a frozen process, a saturated uplink) must not make rportd read every tunnel
// connection into its heap, a whole channel window each: the data stays in the sockets' kernel
// buffers, TCP slows the senders, and nothing is lost when the client reads again.
test('a stalled client: rportd holds little of what its tunnel connections send, and every byte arrives after', async (t) => {
  const streams = 16;
  const each = 8 * MiB;
  const received = new Map<number, { hash: ReturnType<typeof createHash>; bytes: number }>();
  let nextId = 0;
  const target = createServer((s) => {
    // Each connection's first byte names it, so the sums can be matched whatever order they open in.
    let id: number | undefined;
    s.on('data', (b: Buffer) => {
      if (id === undefined) {
        id = b[0]!;
        received.set(id, { hash: createHash('sha256'), bytes: 0 });
        b = b.subarray(1);
      }
      const r = received.get(id)!;
      r.hash.update(b);
      r.bytes += b.length;
    });
    s.on('error', () => undefined);
  });
  const { server, client, port } = await tunnelTo(t, 'stall', target);

  // Every connection's channel is open (its first byte reached the target) before the client stops.
  const sockets: Socket[] = [];
  for (let i = 0; i < streams; i++) {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => undefined);
    s.write(Buffer.from([nextId++]));
    sockets.push(s);
  }
  cleanup(t, () => sockets.forEach((s) => s.destroy()));
  await eventually(() => (received.size === streams ? true : undefined), 10_000, 'every connection open at the target');

  client.child.kill('SIGSTOP');
  cleanup(t, () => client.child.kill('SIGCONT'));
  const rssBefore = rssBytes(server.proc.pid);
  const payloads = sockets.map(() => randomBytes(each));
  sockets.forEach((s, i) => s.write(payloads[i]));
  // What rportd reads while the client is stopped, it reads within moments; then everything waits.
  await new Promise((resolve) => setTimeout(resolve, 3000));
  const grown = rssBytes(server.proc.pid) - rssBefore;
  const offered = streams * each;
  assert.ok(
    grown < 40 * MiB,
    `rportd grew by ${(grown / MiB).toFixed(1)} MiB while its client was stopped and ${offered / MiB} MiB waited to be sent`,
  );

  client.child.kill('SIGCONT');
  await eventually(
    () => ([...received.values()].every((x) => x.bytes === each) ? true : undefined),
    60_000,
    'all bytes at the target',
  );
  for (let i = 0; i < streams; i++) {
    assert.equal(
      received.get(i)!.hash.digest('hex'),
      createHash('sha256').update(payloads[i]!).digest('hex'),
      `connection ${i} byte-exact`,
    );
  }
});

// The other way: whoever connects to a tunnel and stops reading must not make rportd hold what the
// client's side keeps sending. Credit (the channel window) is given only while the reader keeps up, and
// the windows of one client's channels grow to 64 MiB in all (patches/ssh2+1.17.0.patch).
test('tunnel users who stop reading: rportd holds a bounded amount for them, and every byte arrives after', async (t) => {
  const streams = 16;
  const each = 24 * MiB;
  const payload = randomBytes(each);
  const source = createServer((s) => {
    s.on('error', () => undefined);
    s.end(payload);
  });
  const { server, port } = await tunnelTo(t, 'slowreaders', source);

  const rssBefore = rssBytes(server.proc.pid);
  const readers = Array.from({ length: streams }, () => {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => undefined);
    s.pause();
    return s;
  });
  cleanup(t, () => readers.forEach((s) => s.destroy()));
  await new Promise((resolve) => setTimeout(resolve, 4000));
  const grown = rssBytes(server.proc.pid) - rssBefore;
  assert.ok(
    grown < 110 * MiB,
    `rportd grew by ${(grown / MiB).toFixed(1)} MiB for ${streams} readers that read nothing of ${(streams * each) / MiB} MiB`,
  );

  const sums = await Promise.all(
    readers.map(
      (s) =>
        new Promise<string>((resolve, reject) => {
          const hash = createHash('sha256');
          let got = 0;
          s.on('data', (b: Buffer) => {
            hash.update(b);
            got += b.length;
          });
          s.on('end', () =>
            got === each ? resolve(hash.digest('hex')) : reject(new Error(`got ${got} of ${each} bytes`)),
          );
          s.resume();
        }),
    ),
  );
  const want = createHash('sha256').update(payload).digest('hex');
  sums.forEach((sum, i) => assert.equal(sum, want, `reader ${i} byte-exact`));
});
