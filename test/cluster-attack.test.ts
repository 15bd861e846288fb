// Issue 21 finding 13: the cluster secret, attacked as one who can read (or write) the database and reach the
// nodes' APIs would: the raw secret, a signed call on a route that is not node-to-node, replays, changed bodies,
// and a node row planted to draw calls to a listener of the attacker's. Real PostgreSQL, two real rportd.
import assert from 'node:assert/strict';
import { createHmac, createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import test from 'node:test';
import { ConfigError, loadConfig } from '../src/config/loader.js';
import { SERVER_KEYS, serverConfig } from '../src/config/server-config.js';
import { Logger, LogSink } from '../src/log.js';
import { PostgresDb } from '../src/server/db/postgres.js';
import { rawRequest } from './helpers/api-app.js';
import { postgresMissing, startPostgres, type Postgres } from '../harness/postgres.js';
import { API_AUTH, cleanup, eventually, startClient, startServer, tmpDir, writeFile } from '../harness/procs.js';

const basic = { authorization: `Basic ${Buffer.from(API_AUTH).toString('base64')}` };
const JSON_BODY = { 'content-type': 'application/json' };
const title = (body: string) => (JSON.parse(body) as { errors: Array<{ title: string }> }).errors[0]!.title;

async function withDb<T>(pg: Postgres, fn: (db: PostgresDb) => Promise<T>): Promise<T> {
  const db = await PostgresDb.open(
    { host: '127.0.0.1', port: pg.port, database: 'postgres', user: 'rport', password: '' },
    new Logger(LogSink.stderr(), 'error', 'test'),
  );
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

/** A signature as a node makes it, computed by the attacker who read the secret from the database. */
function sign(
  secret: string,
  method: string,
  url: string,
  body: string,
  time = Date.now(),
  nonce = randomBytes(16).toString('base64url'),
): string {
  const hash = createHash('sha256').update(body).digest('hex');
  const mac = createHmac('sha256', secret)
    .update([method, url, String(time), nonce, hash].join('\n'))
    .digest('base64url');
  return `v1 ${time} ${nonce} ${hash} ${mac}`;
}

/** An HTTP listener of the attacker's on 127.0.0.3: it records what reaches it. */
async function hostileListener(
  t: test.TestContext,
): Promise<{ port: number; got: Array<{ url: string; headers: IncomingHttpHeaders }> }> {
  const got: Array<{ url: string; headers: IncomingHttpHeaders }> = [];
  const server = createServer((req, res) => {
    got.push({ url: req.url ?? '', headers: req.headers });
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"data":{}}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.3', resolve));
  cleanup(t, () => new Promise((resolve) => server.close(resolve)));
  return { port: (server.address() as { port: number }).port, got };
}

test(
  'issue 21 finding 13: the cluster secret opens nothing by itself; signed calls reach only node-to-node routes, once, with their body; no calls to planted nodes',
  { skip: postgresMissing(), timeout: 180_000 },
  async (t) => {
    const pg = await startPostgres(t);
    const shared = [...pg.flags, '--allowed-node-addresses', '127.0.0.1/32'];
    const a = await startServer(t, shared);
    const b = await startServer(t, shared);
    const secret = await withDb(
      pg,
      async (db) => (await db.get<{ secret: string }>('SELECT secret FROM cluster_secret WHERE id = 1'))!.secret,
    );

    // The raw secret, as nodes sent it over plain HTTP before: no longer a key to anything.
    let r = await rawRequest(a.apiPort, 'GET', '/api/v1/clients-auth', { 'x-rport-cluster-secret': secret });
    assert.equal(r.status, 401, r.body);
    r = await rawRequest(
      a.apiPort,
      'POST',
      '/api/v1/clients-auth',
      { 'x-rport-cluster-secret': secret, ...JSON_BODY },
      JSON.stringify({ id: 'planted', password: 'a-long-secret' }),
    );
    assert.equal(r.status, 401, r.body);

    // A valid signature opens node-to-node routes only: not the credentials, not the client list.
    const sig = (method: string, url: string, body = '') => ({
      'x-rport-cluster-signature': sign(secret, method, url, body),
    });
    r = await rawRequest(a.apiPort, 'GET', '/api/v1/clients-auth', sig('GET', '/api/v1/clients-auth'));
    assert.equal(r.status, 403, r.body);
    assert.match(
      title(r.body),
      /GET \/api\/v1\/clients-auth is not a node-to-node call: the cluster signature opens only those/,
    );
    const create = JSON.stringify({ id: 'planted', password: 'a-long-secret' });
    r = await rawRequest(
      a.apiPort,
      'POST',
      '/api/v1/clients-auth',
      { ...sig('POST', '/api/v1/clients-auth', create), ...JSON_BODY },
      create,
    );
    assert.equal(r.status, 403, r.body);

    // A node-to-node route takes a signed call once, with the body it was signed for, and a fresh time.
    const run = '/api/v1/cluster/jobs/nojob/run';
    const header = sig('POST', run, '{}');
    r = await rawRequest(a.apiPort, 'POST', run, { ...header, ...JSON_BODY }, '{}');
    assert.equal(r.status, 404, r.body);
    assert.match(title(r.body), /no job "nojob" waiting to be sent/);
    r = await rawRequest(a.apiPort, 'POST', run, { ...header, ...JSON_BODY }, '{}');
    assert.equal(r.status, 401, r.body);
    assert.match(title(r.body), /node-to-node signature refused: it was sent before \(a replay\)/);
    r = await rawRequest(a.apiPort, 'POST', run, { ...sig('POST', run, '{}'), ...JSON_BODY }, '{"a":1}');
    assert.match(title(r.body), /the body is not the one signed/);
    r = await rawRequest(
      a.apiPort,
      'POST',
      run,
      { ...sig('POST', '/api/v1/cluster/jobs/other/run', '{}'), ...JSON_BODY },
      '{}',
    );
    assert.match(title(r.body), /its MAC is wrong/);
    r = await rawRequest(
      a.apiPort,
      'POST',
      run,
      { 'x-rport-cluster-signature': sign(secret, 'POST', run, '{}', Date.now() - 120_000), ...JSON_BODY },
      '{}',
    );
    assert.equal(r.status, 401, r.body);
    assert.match(title(r.body), /made 2m0\.\d+s away from this node's clock, more than 30s/);

    // A row planted in the nodes table draws no call to the attacker's listener: not a forwarded admin call,
    // not a takeover when the client it "holds" connects.
    const hostile = await hostileListener(t);
    await withDb(pg, async (db) => {
      const now = Date.now();
      await db.run(
        'INSERT INTO nodes (id, api_url, client_address, public_host, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?)',
        ['evil', `http://127.0.0.3:${hostile.port}`, '', '127.0.0.3', now, now],
      );
      await db.run(
        "INSERT INTO clients (id, connected, node_id, session_id, auth_id) VALUES ('held-by-evil', 1, 'evil', 'e', 'client1')",
      );
    });
    const nodes = async () =>
      (
        JSON.parse((await rawRequest(a.apiPort, 'GET', '/api/v1/cluster', basic)).body) as {
          data: { cluster_nodes: Array<{ id: string }> };
        }
      ).data.cluster_nodes;
    await eventually(
      async () => ((await nodes()).some((n) => n.id === 'evil') ? true : undefined),
      10_000,
      'node A sees the planted node',
    );
    r = await rawRequest(
      a.apiPort,
      'PUT',
      '/api/v1/clients/held-by-evil/tunnels?remote=127.0.0.1:22&check_port=0',
      basic,
    );
    assert.equal(r.status, 503, r.body);
    assert.match(
      title(r.body),
      /node evil is registered at "http:\/\/127\.0\.0\.3:\d+", an address outside \[database\] allowed_node_addresses: not called/,
    );
    const victim = startClient(t, `127.0.0.1:${a.port}`, ['--id', 'held-by-evil']);
    await victim.waitFor(/ping to 127\.0\.0\.1:\d+ succeeded/);
    await a.proc.waitFor(/client held-by-evil: node evil is registered at .* not called.*; taken over/);
    assert.deepEqual(hostile.got, [], 'the planted node was called');

    // Real nodes still forward to each other: a tunnel of a client on B, created and deleted through A.
    const onB = startClient(t, `127.0.0.1:${b.port}`, ['--id', 'on-b']);
    await onB.waitFor(/ping to 127\.0\.0\.1:\d+ succeeded/);
    const seen = async () =>
      (
        JSON.parse((await rawRequest(a.apiPort, 'GET', '/api/v1/clients/on-b', basic)).body) as {
          data?: { connected?: boolean };
        }
      ).data?.connected;
    await eventually(async () => ((await seen()) ? true : undefined), 10_000, 'node A sees on-b connected');
    r = await rawRequest(a.apiPort, 'PUT', '/api/v1/clients/on-b/tunnels?remote=127.0.0.1:22&check_port=0', basic);
    assert.equal(r.status, 200, r.body);
    const bId = (
      JSON.parse((await rawRequest(b.apiPort, 'GET', '/api/v1/status', basic)).body) as { data: { node_id: string } }
    ).data.node_id;
    assert.equal(r.headers['x-rport-node'], bId);
    const tunnel = (JSON.parse(r.body) as { data: { id: string } }).data.id;
    r = await rawRequest(a.apiPort, 'DELETE', `/api/v1/clients/on-b/tunnels/${tunnel}`, basic);
    assert.equal(r.status, 204, r.body);
    assert.equal(r.headers['x-rport-node'], bId);
  },
);

test('[database] allowed_node_addresses, node_address and [api] max_token_lifetime: a bad value is one line naming the key and the fix', (t) => {
  const dir = tmpDir(t);
  const base = '[server]\nauth = "c:p"\n[api]\naddress = "10.0.0.11:3000"\nauth = "admin:secret"\n';
  const error = (text: string) => {
    try {
      serverConfig(
        loadConfig(SERVER_KEYS, writeFile(dir, `${Math.random().toString(36).slice(2)}.conf`, base + text), new Map()),
      );
    } catch (err) {
      assert.ok(err instanceof ConfigError, String(err));
      return err.message.slice(dir.length + 1);
    }
    return 'no error';
  };
  // The file ends in [api]: a key line added goes there, a section added starts after it.
  assert.match(
    error('max_token_lifetime = 2161\n'),
    /\[api\] max_token_lifetime = 2161 must be 0 to 2160 hours \(90 days\) \(use e\.g\. 720\)$/,
  );
  const pg = '[database]\ndb_type = "postgres"\n';
  assert.equal(error(pg), 'no error', 'the defaults take a node on a private network');
  assert.match(
    error(`${pg}allowed_node_addresses = []\n`),
    /\[database\] allowed_node_addresses = \[\] is empty: no node could be called \(use e\.g\. \["10\.0\.0\.0\/24"\]\)$/,
  );
  assert.match(
    error(`${pg}allowed_node_addresses = ["10.0.0.0/40"]\n`),
    /\[database\] allowed_node_addresses = \["10\.0\.0\.0\/40"\] has "10\.0\.0\.0\/40" is not an address, CIDR/,
  );
  assert.match(
    error(`${pg}allowed_node_addresses = ["192.168.0.0/16"]\n`),
    /\[database\] allowed_node_addresses = \["192\.168\.0\.0\/16"\] does not include this node's own address 10\.0\.0\.11 \(node_address, port 3000\): the other nodes would not call it \(add e\.g\. "10\.0\.0\.11"\)$/,
  );
  assert.match(
    error(`${pg}node_address = "node-a.example"\n`),
    /\[database\] node_address = "node-a\.example" is not an IP address: the other nodes check it against allowed_node_addresses \(use e\.g\. "10\.0\.0\.11"\)$/,
  );
});
