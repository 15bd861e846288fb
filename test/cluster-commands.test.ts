// Remote commands in a cluster: three rportd nodes on one PostgreSQL behind HAProxy, six real clients spread
// over them. A command through a node that does not hold the client, multi-client jobs over all three nodes,
// a holder that does not answer.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import test from 'node:test';
import { fileURLToPath } from 'node:url';
import { apiCall } from './helpers/jobs-api.js';
import { haproxyMissing, plantGhostNode, postgresMissing, startHaproxy, startPostgres } from '../harness/postgres.js';
import { API_AUTH, cleanup, eventually, Proc, startServer, tmpDir, type ServerHandle } from '../harness/procs.js';

const FLEET = fileURLToPath(new URL('../bench/fleet.js', import.meta.url));
const FLEET_SIZE = 6;
const missing = postgresMissing() ?? haproxyMissing();

type Client = { id: string; connected: boolean; node_id: string | null };

async function clients(node: ServerHandle): Promise<Client[]> {
  const r = await apiCall(node, 'GET', '/api/v1/clients?page[limit]=500&fields[clients]=id,connected,node_id');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.data;
}

/** A multi-client job once it has `jobs` jobs, none of them running, as `node` shows it. */
async function multiDone(node: ServerHandle, jid: string, jobs: number): Promise<any> {
  let last: any;
  return eventually(
    async () => {
      last = (await apiCall(node, 'GET', `/api/v1/commands/${jid}`)).body.data;
      return last.jobs.length === jobs && last.jobs.every((j: { status: string }) => j.status !== 'running')
        ? last
        : undefined;
    },
    60_000,
    `multi-client job ${jid} with ${jobs} jobs ended`,
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${JSON.stringify(last?.jobs.map((j: any) => [j.client_id, j.status, j.error]))}`);
  });
}

const outcome = (m: any) => m.jobs.map((j: { client_id: string; status: string }) => `${j.client_id}:${j.status}`);

test(
  'commands in a cluster: forwarded to the holder, multi-client jobs over three nodes, a holder that does not answer',
  { skip: missing, timeout: 180_000 },
  async (t) => {
    const pg = await startPostgres(t);
    const shared = [
      ...pg.flags,
      '--auth',
      'bench:bench-secret',
      '--key-seed',
      'one host key for the whole cluster',
      '--log-level',
      'info',
    ];
    const nodes: ServerHandle[] = [];
    for (let i = 0; i < 3; i++) nodes.push(await startServer(t, shared));
    const [a, b, c] = nodes as [ServerHandle, ServerHandle, ServerHandle];
    const ids = await Promise.all(
      nodes.map(async (n) => (await apiCall(n, 'GET', '/api/v1/status')).body.data.node_id as string),
    );
    const [idA, idB, idC] = ids as [string, string, string];
    const front = await startHaproxy(
      t,
      nodes.map((n) => n.port),
    );

    const fleet = new Proc(
      spawn(process.execPath, [FLEET, `127.0.0.1:${front}`, String(FLEET_SIZE), 'j', '5s', '2s'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    cleanup(t, () => fleet.stop());
    await fleet.waitFor(new RegExp(`^connected ${FLEET_SIZE}$`), 60_000);
    for (const node of nodes) {
      await eventually(
        async () => ((await clients(node)).filter((x) => x.connected).length === FLEET_SIZE ? true : undefined),
        15_000,
        `all ${FLEET_SIZE} clients listed by every node`,
      );
    }
    const seen = await clients(a);
    const on = (node: string) => {
      const held = seen.filter((x) => x.node_id === node).map((x) => x.id);
      assert.ok(
        held.length > 0,
        `HAProxy spread the clients over all nodes: node ${node} holds none (${JSON.stringify(seen)})`,
      );
      return held[0]!;
    };
    const [onA, onB, onC] = [on(idA), on(idB), on(idC)];

    // --- a command through node A for a client held by node C: the same job on every node -------------------
    const one = await apiCall(a, 'POST', `/api/v1/clients/${onC}/commands`, {
      command: '/usr/bin/uname -s',
      timeout_sec: 30,
    });
    assert.equal(one.status, 200, JSON.stringify(one.body));
    const jid = one.body.data.jid as string;
    const done = await eventually(
      async () => {
        const j = (await apiCall(a, 'GET', `/api/v1/clients/${onC}/commands/${jid}`)).body.data;
        return j.status === 'running' ? undefined : j;
      },
      30_000,
      `job ${jid} ended`,
    );
    assert.equal(done.status, 'successful', JSON.stringify(done));
    assert.equal(done.result.stdout, 'Linux\n');
    for (const node of nodes) {
      const j = (await apiCall(node, 'GET', `/api/v1/clients/${onC}/commands/${jid}`)).body.data;
      assert.deepEqual([j.status, j.result.stdout, j.client_id, j.exit_code], ['successful', 'Linux\n', onC, 0]);
    }
    // C sent it: its log has the job, A's has none of it.
    await c.proc.waitFor(new RegExp(`job ${jid}: successful on client ${onC}`), 5000);
    assert.ok(
      !a.proc.lines.some((l) => l.includes(`job ${jid}:`)),
      'node A forwarded the call, it did not run the job',
    );

    // --- multi-client jobs through node A over clients of all three nodes -------------------------------------
    const all = seen.map((x) => x.id).sort();
    const conc = await apiCall(a, 'POST', '/api/v1/commands', {
      command: '/usr/bin/uname -s',
      client_ids: all,
      execute_concurrently: true,
      timeout_sec: 30,
    });
    assert.equal(conc.status, 200, JSON.stringify(conc.body));
    const cm = await multiDone(a, conc.body.data.jid, FLEET_SIZE);
    assert.deepEqual(
      outcome(cm).sort(),
      all.map((id) => `${id}:successful`),
    );
    for (const j of cm.jobs) assert.equal(j.result.stdout, 'Linux\n', `${j.client_id}: ${JSON.stringify(j)}`);

    const seq = await apiCall(a, 'POST', '/api/v1/commands', {
      command: '/usr/bin/uname -s',
      client_ids: all,
      abort_on_error: true,
      timeout_sec: 30,
    });
    assert.equal(seq.status, 200, JSON.stringify(seq.body));
    const sm = await multiDone(a, seq.body.data.jid, FLEET_SIZE);
    assert.deepEqual(
      outcome(sm),
      all.map((id) => `${id}:successful`),
      'one after the other, in the order asked',
    );
    for (let i = 1; i < sm.jobs.length; i++) {
      assert.ok(
        Date.parse(sm.jobs[i].started_at) >= Date.parse(sm.jobs[i - 1].finished_at),
        `job ${i} started after job ${i - 1} had ended: ${JSON.stringify(sm.jobs.map((j: any) => [j.client_id, j.started_at, j.finished_at]))}`,
      );
    }
    // The multi-client job with each client's result, as every node shows it.
    for (const node of [b, c])
      assert.deepEqual(outcome(await multiDone(node, seq.body.data.jid, FLEET_SIZE)), outcome(sm));

    // abort_on_error over clients of B and C, asked through A: the second mkdir fails and A's client is spared.
    const dir = join(tmpDir(t, 'rport-cluster-jobs-'), 'once');
    const abort = await apiCall(a, 'POST', '/api/v1/commands', {
      command: `/usr/bin/mkdir ${dir}`,
      client_ids: [onB, onC, onA],
      timeout_sec: 30,
    });
    assert.equal(abort.status, 200, JSON.stringify(abort.body));
    const am = await multiDone(a, abort.body.data.jid, 2);
    assert.deepEqual(outcome(am), [`${onB}:successful`, `${onC}:failed`]);
    assert.equal(am.jobs[1].error, 'exit code 1');

    // --- the node-to-node route takes only calls signed with the cluster secret -------------------------------
    for (const auth of [API_AUTH, '']) {
      const r = await a.api(`/api/v1/cluster/jobs/${jid}/run`, auth, 'POST');
      assert.equal(r.status, 401, `run a job with ${auth ? 'the API user' : 'no credentials'}`);
    }

    // --- a holder that does not answer: 503 for one client; in a multi-client job that client's job fails -----
    await plantGhostNode(pg);
    await eventually(
      async () =>
        (await apiCall(a, 'GET', '/api/v1/cluster')).body.data.cluster_nodes.some(
          (n: { id: string }) => n.id === 'ghost',
        )
          ? true
          : undefined,
      10_000,
      'node A sees the ghost node',
    );
    const single = await apiCall(a, 'POST', '/api/v1/clients/ghost-client/commands', { command: '/usr/bin/uname -s' });
    assert.equal(single.status, 503, JSON.stringify(single.body));
    assert.equal(single.body.errors[0].code, 'node_unavailable');
    assert.match(single.body.errors[0].title, /held by node ghost .*did not answer/);
    const mixed = await apiCall(a, 'POST', '/api/v1/commands', {
      command: '/usr/bin/uname -s',
      client_ids: ['ghost-client', onC],
      execute_concurrently: true,
      timeout_sec: 30,
    });
    assert.equal(mixed.status, 200, JSON.stringify(mixed.body));
    const mm = await multiDone(a, mixed.body.data.jid, 2);
    assert.deepEqual(outcome(mm).sort(), ['ghost-client:failed', `${onC}:successful`].sort(), 'the others go on');
    assert.match(
      mm.jobs.find((j: { client_id: string }) => j.client_id === 'ghost-client').error,
      /node ghost .*did not answer/,
    );
    // Unlike a client that is not connected, a node that does not answer is a failure abort_on_error stops at.
    const stopped = await apiCall(a, 'POST', '/api/v1/commands', {
      command: '/usr/bin/uname -s',
      client_ids: ['ghost-client', onC],
      timeout_sec: 30,
    });
    assert.deepEqual(outcome(await multiDone(a, stopped.body.data.jid, 1)), ['ghost-client:failed']);
  },
);
