// Nodes of a cluster whose APIs speak TLS: their node-to-node calls are HTTPS, and a node checks the other's
// certificate (trusted here through NODE_EXTRA_CA_CERTS, as an operator with a private CA would).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { postgresMissing, startPostgres } from '../harness/postgres.js';
import { API_AUTH, echoServer, eventually, startClient, startServer, tmpDir } from '../harness/procs.js';
import { curl, makeCert } from './helpers/tls-cert.js';

test(
  'two nodes with TLS APIs: api_url is https, a call through one node reaches the client on the other over HTTPS; a node that does not trust the certificate does not call',
  { skip: postgresMissing(), timeout: 120_000 },
  async (t) => {
    const pg = await startPostgres(t);
    const { cert, key } = makeCert(tmpDir(t), 'nodes');
    const shared = [...pg.flags, '--key-seed', 'one host key', '--api-cert-file', cert, '--api-key-file', key];
    // The child processes take the environment as they start; the test's own process is not affected.
    process.env.NODE_EXTRA_CA_CERTS = cert;
    let a, b;
    try {
      a = await startServer(t, shared);
      b = await startServer(t, shared);
    } finally {
      delete process.env.NODE_EXTRA_CA_CERTS;
    }
    const untrusting = await startServer(t, shared);
    const call = async (port: number, path: string, method = 'GET') => {
      const r = await curl(['--cacert', cert, '-u', API_AUTH, '-X', method, `https://127.0.0.1:${port}${path}`]);
      assert.equal(r.code, 0, r.err);
      return JSON.parse(r.out);
    };
    const status = await call(a.apiPort, '/api/v1/status');
    const idA = status.data.node_id as string;
    assert.equal(status.data.cluster_nodes[0].api_url, `https://127.0.0.1:${a.apiPort}`);
    await eventually(
      async () => {
        const nodes = (await call(b.apiPort, '/api/v1/status')).data.cluster_nodes as Array<{ api_url: string }>;
        return nodes.some((n) => n.api_url === `https://127.0.0.1:${a.apiPort}`) ? true : undefined;
      },
      15_000,
      "node A's https api_url seen by node B",
    );

    startClient(t, `127.0.0.1:${a.port}`, ['--id', 'on-a']);
    await eventually(
      async () => {
        const list = (await call(b.apiPort, '/api/v1/clients')).data as Array<{ id: string; connected: boolean }>;
        return list.some((c) => c.id === 'on-a' && c.connected) ? true : undefined;
      },
      15_000,
      'the client on node A listed by node B',
    );
    const target = await echoServer(t);
    const tunnel = `/api/v1/clients/on-a/tunnels?remote=127.0.0.1:${target}&local=127.0.0.1:0`;
    const viaB = await call(b.apiPort, tunnel, 'PUT');
    assert.equal(viaB.data?.node_id, idA, JSON.stringify(viaB));

    const refused = await call(untrusting.apiPort, tunnel, 'PUT');
    assert.equal(refused.errors?.[0]?.code, 'node_unavailable', JSON.stringify(refused));
    assert.match(
      refused.errors[0].title,
      new RegExp(
        `held by node ${idA} .*its TLS certificate was refused \\(.*\\): it must name the node's IP address .*NODE_EXTRA_CA_CERTS`,
      ),
    );
  },
);
