import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sleep } from '../src/timeout.js';
import { RemoteError } from '../src/transport/control-channel.js';
import { METHOD } from '../src/transport/protocol.js';
import { apiCall, runJob } from './helpers/jobs-api.js';
import { CLIENT_AUTH, startClient, startServer, tmpDir, writeFile } from '../harness/procs.js';
import { connectRequest, rawLink, requestConnect } from './helpers/raw-client.js';

const PART = 160 << 10;
/** Below the control channel's 200 messages a second, so that the rate limit is not what stops the attacker. */
const GAP_MS = 7;

/**
 * Issue 21, finding 2: a logged-in client given 8 jobs sends result parts (up to 256 MiB) and never ends
 * them. What it may hold is one whole result (two 16 MiB streams), released when it goes; another client's
 * result still arrives whole.
 */
test("a client that never finishes its results holds at most one result's bytes, and others' results still land", async (t) => {
  const server = await startServer(t);
  const evil = await rawLink(server.port, CLIENT_AUTH);
  const jids: string[] = [];
  evil.control.handle(METHOD.jobRun, (p) => {
    jids.push((p as { jid: string }).jid);
    return { pid: 4000 + jids.length, started_at: Date.now() };
  });
  await requestConnect(evil, connectRequest('evil', 4242));
  for (let i = 0; i < 8; i++) {
    const r = await apiCall(server, 'POST', '/api/v1/clients/evil/commands', {
      command: '/usr/bin/uptime',
      timeout_sec: 600,
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }
  assert.equal(jids.length, 8);

  const chunk = Buffer.alloc(PART, 'z').toString('base64');
  /**
   * Sends each job a result of two streams of 100 parts (within a stream's 16 MiB), never ending one, until
   * the server refuses a part: the bytes it took until then (at most 8 x 31 MiB) and the refusal.
   */
  const flood = async (link: typeof evil) => {
    let accepted = 0;
    for (const jid of jids) {
      let seq = 0;
      for (const stream of ['stdout', 'stderr']) {
        for (let i = 0; i < 100; i++, seq++) {
          await sleep(GAP_MS);
          try {
            await link.control.request(METHOD.jobPart, { jid, seq, stream, data: chunk }, 30_000);
          } catch (err) {
            assert.ok(err instanceof RemoteError, String(err));
            return { accepted, refusal: err.message };
          }
          accepted += PART;
        }
      }
    }
    return { accepted, refusal: '' };
  };
  const first = await flood(evil);
  assert.ok(
    first.accepted <= (32 << 20) + 4096,
    `the server took ${first.accepted >> 20} MiB of unfinished results from one client`,
  );
  assert.match(first.refusal, /client evil has over \d+ bytes of unfinished results/);

  // An honest client's result of a few MiB arrives whole meanwhile.
  const conf = writeFile(tmpDir(t), 'rport.conf', '[remote-commands]\nsend_back_limit = 8388608\n');
  const honest = startClient(t, `127.0.0.1:${server.port}`, ['-c', conf, '--id', 'honest']);
  await honest.waitFor(/connected to/);
  const job = await runJob(server, 'honest', { command: '/usr/bin/seq 1 1000000', timeout_sec: 30 });
  assert.equal(job.status, 'successful', JSON.stringify({ ...job, result: undefined }));
  assert.equal(job.result.stdout.length, 6888896);
  assert.ok(job.result.stdout.endsWith('\n999999\n1000000\n'));

  // Its unfinished results go with it: back again, it may send as much as the first time.
  evil.close();
  await server.proc.waitFor(/client evil disconnected/);
  const again = await rawLink(server.port, CLIENT_AUTH);
  again.control.handle(METHOD.jobRun, () => ({ pid: 1, started_at: Date.now() }));
  await requestConnect(again, connectRequest('evil', 4243));
  const second = await flood(again);
  assert.equal(second.accepted, first.accepted, 'what the first connection sent was released when it closed');
  again.close();
});
