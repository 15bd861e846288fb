// npm run bench cluster: three rportd nodes on one PostgreSQL behind HAProxy against one node on SQLite:
// clients per node, the reconnect storm after a node is lost, and API latency through a forwarding node.
import type { TestContext } from 'node:test';
import { haproxyMissing, postgresMissing, startHaproxy, startPostgres } from '../harness/postgres.js';
import { type Cleanup, startRportd, withCleanup } from './lib/setups.js';
import { median, MiB, rssBytes } from './lib/stats.js';
import { fleet, type Options, type Row } from './scenarios.js';

const f1 = (x: number) => x.toFixed(1);

/** The test helpers' cleanup hooks, run by the bench's Cleanup. */
const asTest = (c: Cleanup) => ({ after: (fn: () => unknown) => c.add(fn) }) as unknown as TestContext;

async function allConnected(f: { connected(): number }, n: number, boundMs: number): Promise<number> {
  const t0 = performance.now();
  while (f.connected() < n) {
    if (performance.now() - t0 > boundMs)
      throw new Error(`only ${f.connected()} of ${n} clients back within ${boundMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return (performance.now() - t0) / 1000;
}

export async function cluster(o: Options): Promise<Row[]> {
  const missing = postgresMissing() ?? haproxyMissing();
  if (missing) throw new Error(missing);
  const n = o.quick ? 300 : 1500;
  const maxRetrySec = 5;
  const rows: Row[] = [];

  // One node on SQLite: the baseline.
  const one = await withCleanup(async (c) => {
    const d = await startRportd(c);
    const t0 = performance.now();
    await fleet(c, d.serverPort, n, '3m', `${maxRetrySec}s`, 'solo');
    return { seconds: (performance.now() - t0) / 1000, rss: rssBytes(d.server.pid) };
  });
  o.note(`one node: ${n} clients in ${f1(one.seconds)} s, ${f1(one.rss / MiB)} MiB`);

  await withCleanup(async (c) => {
    const pg = await startPostgres(asTest(c));
    const nodes = [];
    for (let i = 0; i < 3; i++) nodes.push(await startRportd(c, [...pg.flags, '--key-seed', 'bench cluster']));
    const front = await startHaproxy(
      asTest(c),
      nodes.map((d) => d.serverPort),
    );
    const t0 = performance.now();
    const f = await fleet(c, front, n, '3m', `${maxRetrySec}s`, 'multi');
    const seconds = (performance.now() - t0) / 1000;
    const rss = nodes.map((d) => rssBytes(d.server.pid));
    const status = await Promise.all(nodes.map((d) => d.api('GET', '/api/v1/status')));
    const here = status.map((s) => s.data.clients_connected_here as number);
    o.note(
      `three nodes: ${n} clients in ${f1(seconds)} s, per node ${here.join('/')}, ${rss.map((r) => f1(r / MiB)).join('/')} MiB`,
    );
    rows.push({
      scenario: '9. Cluster',
      measure: `${n} clients connected: one node (SQLite) vs three nodes (PostgreSQL, HAProxy)`,
      rport: `three: ${f1(seconds)} s, ${here.join('/')} clients, ${f1(Math.max(...rss) / MiB)} MiB at most per node`,
      openssh: `one: ${f1(one.seconds)} s, ${n} clients, ${f1(one.rss / MiB)} MiB`,
    });

    // API latency: a tunnel created and deleted on the node that holds the client, and through another node.
    const [a, , cNode] = nodes as [(typeof nodes)[0], (typeof nodes)[0], (typeof nodes)[0]];
    const idC = status[2]!.data.node_id as string;
    const list = await a.api('GET', '/api/v1/clients?page[limit]=500&fields[clients]=id,node_id');
    const client = (list.data as Array<{ id: string; node_id: string }>).find((x) => x.node_id === idC)!.id;
    const pair = async (via: typeof a) => {
      const t = performance.now();
      const made = await via.api('PUT', `/api/v1/clients/${client}/tunnels?remote=127.0.0.1:9&local=127.0.0.1:0`);
      await via.api('DELETE', `/api/v1/clients/${client}/tunnels/${made.data.id}`);
      return performance.now() - t;
    };
    const runs = o.quick ? 20 : 100;
    const direct: number[] = [];
    const forwarded: number[] = [];
    await pair(cNode);
    await pair(a);
    for (let i = 0; i < runs; i++) {
      direct.push(await pair(cNode));
      forwarded.push(await pair(a));
    }
    rows.push({
      scenario: '9. Cluster',
      measure: `API: create + delete a tunnel, median of ${runs}`,
      rport: `through another node: ${f1(median(forwarded))} ms`,
      openssh: `on the client's node: ${f1(median(direct))} ms`,
      ratio: `+${f1(median(forwarded) - median(direct))} ms forwarded`,
    });

    // The reconnect storm: node B SIGKILLed, its clients back on A or C.
    const lost = here[1]!;
    const killed = performance.now();
    nodes[1]!.server.kill('SIGKILL');
    // The fleet reports every 100 ms: first the drop, then the return.
    while (f.connected() === n && performance.now() - killed < 10_000) await new Promise((r) => setTimeout(r, 20));
    await allConnected(f, n, (maxRetrySec + 60) * 1000).catch(() => undefined);
    const back = f.connected() === n ? (performance.now() - killed) / 1000 : Infinity;
    const after = await Promise.all([a, cNode].map((d) => d.api('GET', '/api/v1/status')));
    o.note(`storm: ${lost} clients of the lost node back in ${f1(back)} s`);
    rows.push({
      scenario: '9. Cluster',
      measure: `one of three nodes SIGKILLed: its ${lost} clients back on the others (max_retry_interval ${maxRetrySec}s)`,
      rport: `${f1(back)} s, now ${after.map((s) => s.data.clients_connected_here).join('/')}`,
      goal: `within ${maxRetrySec + 10} s`,
      met: back <= maxRetrySec + 10,
    });
  });
  return rows;
}
