// Three rportd nodes on one PostgreSQL behind HAProxy, 300 real clients: the fleet seen from every node,
// tunnels through any node, a node killed, the database stopped. Real processes: PostgreSQL (initdb in a temp
// folder), HAProxy, three rportd; the clients run in one process (bench/fleet.ts).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import test from 'node:test';
import { fileURLToPath } from 'node:url';
import { haproxyMissing, plantGhostNode, postgresMissing, startHaproxy, startPostgres } from '../harness/postgres.js';
import {
  API_AUTH,
  cleanup,
  echoServer,
  eventually,
  Proc,
  startClient,
  startServer,
  type ServerHandle,
} from '../harness/procs.js';

const FLEET = fileURLToPath(new URL('../bench/fleet.js', import.meta.url));
const FLEET_SIZE = 300;
/** The fleet's max_retry_interval: a client whose node died is back within this + 10 s. */
const MAX_RETRY_S = 2;
const missing = postgresMissing() ?? haproxyMissing();

/**
 * A GET on a node's API. A request that finds no answer says whether the node is still running and what it
 * logged last; one retry covers a keep-alive connection the node closed just as it was reused.
 */
async function get(node: ServerHandle, path: string): Promise<{ status: number; body: any }> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await node.api(path);
    } catch (err) {
      const code = ((err as Error).cause as NodeJS.ErrnoException | undefined)?.code ?? (err as Error).message;
      if (attempt === 0 && !node.proc.exit) continue;
      throw new Error(
        `GET ${path}: ${code}; the node ${node.proc.exit ? `exited (${JSON.stringify(node.proc.exit)})` : 'runs'}, its last lines:\n${node.proc.lines.slice(-20).join('\n')}`,
      );
    }
  }
}

async function clients(
  node: ServerHandle,
): Promise<Array<{ id: string; connected: boolean; node_id: string | null; session_id: string | null }>> {
  const r = await get(node, '/api/v1/clients?page[limit]=500&fields[clients]=id,connected,node_id,session_id');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.data;
}

const nodeIdOf = async (node: ServerHandle): Promise<string> => (await get(node, '/api/v1/status')).body.data.node_id;

/** A connection through a tunnel that echoes: each round trip resolves what came back. */
async function echoConnection(port: number): Promise<{ roundTrip(text: string): Promise<string>; sock: Socket }> {
  const sock = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  return {
    sock,
    roundTrip: (text) =>
      new Promise((resolve, reject) => {
        let got = '';
        const timer = setTimeout(() => reject(new Error(`no echo of "${text}" within 5 s (got "${got}")`)), 5000);
        const onData = (b: Buffer) => {
          got += b.toString();
          if (got.length >= text.length) {
            clearTimeout(timer);
            sock.off('data', onData);
            resolve(got);
          }
        };
        sock.on('data', onData);
        sock.write(text);
      }),
  };
}

async function echoOnce(port: number, text: string): Promise<string> {
  const c = await echoConnection(port);
  try {
    return await c.roundTrip(text);
  } finally {
    c.sock.destroy();
  }
}

test(
  'three nodes on one PostgreSQL behind HAProxy: one fleet, any node; a node killed; the database stopped for 30 s',
  { skip: missing, timeout: 240_000 },
  async (t) => {
    const pg = await startPostgres(t);
    const shared = [
      ...pg.flags,
      '--auth',
      'bench:bench-secret',
      '--key-seed',
      'one host key for the whole cluster',
      '--used-ports',
      '21000-21999',
      '--log-level',
      'info',
    ];
    const nodes: ServerHandle[] = [];
    for (let i = 0; i < 3; i++) nodes.push(await startServer(t, shared));
    const [a, b, c] = nodes as [ServerHandle, ServerHandle, ServerHandle];
    const ids = await Promise.all(nodes.map(nodeIdOf));
    const [idA, idB, idC] = ids as [string, string, string];
    assert.equal(new Set(ids).size, 3, 'each node has its own id');
    assert.equal(new Set(nodes.map((n) => n.fingerprint)).size, 1);
    const front = await startHaproxy(
      t,
      nodes.map((n) => n.port),
    );
    const target = await echoServer(t);

    // --- 300 clients spread over the nodes; every node's API lists all of them --------------------------------
    const fleet = new Proc(
      spawn(process.execPath, [FLEET, `127.0.0.1:${front}`, String(FLEET_SIZE), 'f', '5s', `${MAX_RETRY_S}s`], {
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    cleanup(t, () => fleet.stop());
    await fleet.waitFor(new RegExp(`^connected ${FLEET_SIZE}$`), 90_000);
    for (const node of nodes) {
      await eventually(
        async () => ((await clients(node)).filter((x) => x.connected).length === FLEET_SIZE ? true : undefined),
        15_000,
        `all ${FLEET_SIZE} clients listed by every node`,
      );
    }
    const seen = await clients(a);
    for (const id of ids)
      assert.ok(
        seen.filter((x) => x.node_id === id).length >= 50,
        `node ${id} holds ${seen.filter((x) => x.node_id === id).length} clients`,
      );

    // --- a tunnel created through node A for a client on node C ----------------------------------------------
    const onC = seen.find((x) => x.node_id === idC)!.id;
    const viaA = await a.api(
      `/api/v1/clients/${onC}/tunnels?remote=127.0.0.1:${target}&local=127.0.0.1:0`,
      API_AUTH,
      'PUT',
    );
    assert.equal(viaA.status, 200, JSON.stringify(viaA.body));
    assert.equal(viaA.body.data.node_id, idC, 'the tunnel listens on the node that holds the client');
    assert.equal(viaA.body.data.node_address, '127.0.0.1');
    const portC = Number(viaA.body.data.lport);
    assert.equal(await echoOnce(portC, 'through C'), 'through C');
    // Listed by every node, with where it listens.
    for (const node of nodes) {
      const listed = (await node.api('/api/v1/tunnels')).body.data.find(
        (x: { id: string }) => x.id === viaA.body.data.id,
      );
      assert.deepEqual([listed?.node_id, listed?.lport, listed?.listening], [idC, String(portC), true]);
    }

    // --- node-to-node routes open only to calls signed with the cluster secret (test/cluster-attack.test.ts) ---
    for (const auth of [API_AUTH, '']) {
      const r = await a.api(`/api/v1/cluster/clients/${onC}/takeover`, auth, 'POST');
      assert.equal(r.status, 401, `takeover with ${auth ? 'the API user' : 'no credentials'}`);
    }
    const forged = await fetch(`http://127.0.0.1:${c.apiPort}/api/v1/cluster/clients/${onC}/takeover`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-rport-cluster-signature': `v1 ${Date.now()} nonce ${'0'.repeat(64)} guessed`,
      },
      body: JSON.stringify({ pid: 1, process_start: 1, hostname: 'attacker', address: '127.0.0.9', node_id: 'evil' }),
    });
    assert.equal(forged.status, 401, 'a guessed signature');
    assert.equal((await clients(c)).find((x) => x.id === onC)?.node_id, idC, 'the client stays');

    // --- SIGKILL node B: its clients come back on A or C, their tunnels on the same ports ---------------------
    const onB = seen.filter((x) => x.node_id === idB);
    const withTunnel = onB[0]!.id;
    const tb = await a.api(
      `/api/v1/clients/${withTunnel}/tunnels?remote=127.0.0.1:${target}&local=127.0.0.1:0`,
      API_AUTH,
      'PUT',
    );
    assert.equal(tb.status, 200, JSON.stringify(tb.body));
    const portB = Number(tb.body.data.lport);
    assert.equal(await echoOnce(portB, 'through B'), 'through B');
    const others = new Map(seen.filter((x) => x.node_id !== idB).map((x) => [x.id, x.session_id]));
    b.proc.kill('SIGKILL');
    const killedAt = Date.now();
    await eventually(
      async () => {
        const now = await clients(a);
        const back = now.filter(
          (x) => onB.some((o) => o.id === x.id) && x.connected && (x.node_id === idA || x.node_id === idC),
        );
        return back.length === onB.length ? true : undefined;
      },
      (MAX_RETRY_S + 10) * 1000,
      `the ${onB.length} clients of node B back on A or C`,
    );
    t.diagnostic(`node B's ${onB.length} clients were back on A or C ${Date.now() - killedAt} ms after the kill`);
    const moved = await eventually(
      async () => {
        const listed = (await a.api(`/api/v1/clients/${withTunnel}/tunnels`)).body.data[0];
        return listed?.listening && listed.node_id !== idB ? listed : undefined;
      },
      10_000,
      'the moved tunnel listening again',
    );
    assert.equal(Number(moved.lport), portB, 'the same port');
    assert.equal(await echoOnce(portB, 'moved'), 'moved');
    const after = await clients(c);
    const dropped = after.filter((x) => others.has(x.id) && x.session_id !== others.get(x.id)).map((x) => x.id);
    assert.deepEqual(dropped, [], 'clients of A and C kept their sessions');

    // --- a call for a client on a node that does not answer: 503; that node is declared dead ------------------
    await plantGhostNode(pg);
    const gone = await eventually(
      async () => {
        const r = await a.api(`/api/v1/clients/ghost-client/tunnels?remote=127.0.0.1:${target}`, API_AUTH, 'PUT');
        return r.status === 503 ? r : undefined;
      },
      10_000,
      '503 for a client on a silent node',
    );
    assert.equal(gone.body.errors[0].code, 'node_unavailable');
    assert.match(gone.body.errors[0].title, /held by node ghost .*did not answer/);
    await eventually(
      async () => ((await clients(a)).find((x) => x.id === 'ghost-client')?.connected === false ? true : undefined),
      25_000,
      'the silent node declared dead',
    );
    // Whichever live node swept it says so.
    await Promise.any([a, c].map((n) => n.proc.waitFor(/node ghost sent no heartbeat for 15s: declared dead/, 1000)));

    // --- PostgreSQL stopped for 30 s: tunnels carry on, newcomers are refused, all recovers -------------------
    const held = await echoConnection(portC);
    assert.equal(await held.roundTrip('before'), 'before');
    await pg.stop();
    const stoppedAt = Date.now();
    const newcomer = startClient(t, `127.0.0.1:${front}`, [
      '--id',
      'newcomer',
      '--auth',
      'bench:bench-secret',
      '--max-retry-interval',
      '3s',
    ]);
    await newcomer.waitFor(/server refused the connection: .*registry database/, 20_000);
    for (const node of [a, c]) {
      await eventually(
        async () => ((await get(node, '/api/v1/status')).body.data.database.up === false ? true : undefined),
        15_000,
        'the node says its database is down',
      );
      assert.match(
        await fetch(`http://127.0.0.1:${node.apiPort}/metrics`, {
          headers: { authorization: `Basic ${Buffer.from(API_AUTH).toString('base64')}` },
        }).then((r) => r.text()),
        /^rport_database_up 0$/m,
      );
    }
    const listing = await get(a, '/api/v1/clients');
    assert.equal(listing.status, 503, 'what needs the database says it is away');
    assert.equal(listing.body.errors[0].code, 'database_unavailable');
    let round = 0;
    while (Date.now() - stoppedAt < 30_000) {
      assert.equal(
        await held.roundTrip(`during ${round}`),
        `during ${round}`,
        'the established tunnel connection carries bytes',
      );
      assert.equal(
        await echoOnce(portB, `new ${round}`),
        `new ${round}`,
        'a new connection to a tunnel port is carried',
      );
      round++;
      await new Promise((r) => setTimeout(r, 2000));
    }
    assert.ok(fleet.lines.at(-1) === `connected ${FLEET_SIZE}`, `the fleet stayed connected: ${fleet.lines.at(-1)}`);
    await pg.start();
    await newcomer.waitFor(/connected to/, 30_000);
    for (const node of [a, c]) {
      await eventually(
        async () => ((await get(node, '/api/v1/status')).body.data.database.up ? true : undefined),
        15_000,
        'the node says its database is back',
      );
      await eventually(
        async () => ((await clients(node)).filter((x) => x.connected).length === FLEET_SIZE + 1 ? true : undefined),
        15_000,
        'every client listed again',
      );
    }
    assert.equal(await held.roundTrip('after'), 'after');
    held.sock.destroy();
  },
);
