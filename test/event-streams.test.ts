import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { test } from 'node:test';
import { MAX_EVENT_STREAMS_PER_ADDRESS } from '../src/api/routes/events.js';
import { sleep } from '../src/timeout.js';
import { METHOD } from '../src/transport/protocol.js';
import { apiCall } from './helpers/jobs-api.js';
import { API_AUTH, CLIENT_AUTH, startServer, type ServerHandle } from '../harness/procs.js';
import { connectRequest, rawLink, requestConnect } from './helpers/raw-client.js';

/** An event stream opened on a raw socket: what came back first, and whether the server ended it. */
function openStream(server: ServerHandle): Promise<{ socket: Socket; head: string; ended: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = connect(server.apiPort, '127.0.0.1');
    const ended = new Promise<void>((done) => socket.once('close', () => done()));
    socket.on('error', () => undefined);
    socket.once('error', reject);
    socket.write(
      `GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:${server.apiPort}\r\nAuthorization: Basic ${Buffer.from(API_AUTH).toString('base64')}\r\n\r\n`,
    );
    socket.once('data', (d) => resolve({ socket, head: d.toString('latin1'), ended }));
  });
}

/**
 * Issue 21, shared budgets: an API caller's event streams are bounded in number per address, and a stream
 * whose reader stopped ends once MAX_EVENT_BACKLOG (1 MiB) waits for it, instead of holding every event.
 */
test('event streams: at most MAX_EVENT_STREAMS_PER_ADDRESS from one address, and one that stops reading is ended', async (t) => {
  const server = await startServer(t);
  const streams = await Promise.all(Array.from({ length: MAX_EVENT_STREAMS_PER_ADDRESS }, () => openStream(server)));
  for (const s of streams) assert.match(s.head, /^HTTP\/1\.1 200 /);
  const over = await openStream(server);
  assert.match(over.head, /^HTTP\/1\.1 429 /);
  assert.match(over.head, /too many event streams open \(16 from 127\.0\.0\.1, the most one address may have\)/);
  over.socket.destroy();
  // Closed streams give their place back.
  for (const s of streams.slice(1)) s.socket.destroy();
  await Promise.all(streams.slice(1).map((s) => s.ended));
  const again = await openStream(server);
  assert.match(again.head, /^HTTP\/1\.1 200 /);
  again.socket.destroy();

  // The first stream stops reading; live job output then piles up for it: a logged-in client sends 16 jobs'
  // live output (1 MiB kept per stream of a job), 32 MiB of events, far beyond what kernel buffers hold.
  const stalled = streams[0]!;
  stalled.socket.pause();
  const link = await rawLink(server.port, CLIENT_AUTH);
  t.after(() => link.ssh.end());
  const jids: string[] = [];
  link.control.handle(METHOD.jobRun, (p) => {
    jids.push((p as { jid: string }).jid);
    return { pid: 5000 + jids.length, started_at: Date.now() };
  });
  await requestConnect(link, connectRequest('talker', 4300));
  for (let i = 0; i < 16; i++)
    assert.equal(
      (
        await apiCall(server, 'POST', '/api/v1/clients/talker/commands', {
          command: '/usr/bin/uptime',
          timeout_sec: 600,
        })
      ).status,
      200,
    );
  const chunk = 'z'.repeat(100 << 10);
  for (const jid of jids) {
    for (let i = 0; i < 11; i++) {
      await sleep(7); // under the control channel's message rate
      await link.control.request(METHOD.jobOutput, { jobs: [{ jid, stdout: chunk, stderr: chunk }] }, 30_000);
    }
  }
  await server.proc.waitFor(
    /event stream of 127\.0\.0\.1 closed: it stopped reading, and \d+ bytes of events were waiting for it/,
    30_000,
  );
  stalled.socket.resume();
  await stalled.ended;
});
