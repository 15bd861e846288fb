import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadHostKey } from '../src/transport/host-key.js';
import { exchange, openrportSkip, realServer, type RealServer } from './helpers/openrport.js';
import { eventually, freePort, notifyReceiver, startClient, target, tmpDir, type Proc } from '../harness/procs.js';

// rport against the real RPort rportd (openrport 0.9.13), through the real server's API.
const skip = openrportSkip('interop-openrport-client');
const SEED = 'interop-client-seed';

/** The client as the real server's API lists it, once it is connected. */
function listed(server: RealServer, id: string): Promise<unknown> {
  return eventually(
    async () => {
      const r = await server.api('GET', `/api/v1/clients/${id}`);
      return r.status === 200 && r.body.data.connection_state === 'connected' ? r.body.data : undefined;
    },
    30_000,
    `client ${id} connected on the real rportd`,
  );
}

/** A tunnel made through the real API; its port on the server. */
async function tunnel(
  server: RealServer,
  id: string,
  remotePort: number,
  host = '127.0.0.1',
): Promise<{ status: number; port: number; body: unknown }> {
  const r = await server.api('PUT', `/api/v1/clients/${id}/tunnels?remote=${host}:${remotePort}&check_port=1`);
  return { status: r.status, port: Number(r.body?.data?.lport), body: r.body };
}

/** A command through the real API, waited for to its end. */
async function command(server: RealServer, id: string, cmd: string): Promise<any> {
  const started = await fetchJson(server, 'POST', `/api/v1/clients/${id}/commands`, { command: cmd, timeout_sec: 30 });
  assert.equal(started.status, 200, JSON.stringify(started.body));
  const jid = started.body.data.jid as string;
  return eventually(
    async () => {
      const r = await server.api('GET', `/api/v1/clients/${id}/commands/${jid}`);
      return r.status === 200 && r.body.data.status !== 'running' ? r.body.data : undefined;
    },
    30_000,
    `command ${jid} finished`,
  );
}

async function fetchJson(
  server: RealServer,
  method: string,
  path: string,
  body: unknown,
): Promise<{ status: number; body: any }> {
  const r = await fetch(`http://127.0.0.1:${server.apiPort}${path}`, {
    method,
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
    headers: {
      authorization: `Basic ${Buffer.from('admin:apipass').toString('base64')}`,
      'content-type': 'application/json',
    },
  });
  return { status: r.status, body: await r.json() };
}

function rport(
  t: Parameters<typeof startClient>[0],
  server: RealServer,
  id: string,
  fingerprint: string,
  extra: string[] = [],
  env: NodeJS.ProcessEnv = {},
): Proc {
  return startClient(
    t,
    `127.0.0.1:${server.port}`,
    ['--id', id, '--fingerprint', fingerprint, '--tunnel-allowed', '127.0.0.1', ...extra],
    env,
  );
}

test(
  'rport connects to a real RPort rportd pinned to its MD5 fingerprint (a 12-byte prefix) or its SHA256; a tunnel made through the real API carries bytes both ways; a command runs with its output',
  { skip },
  async (t) => {
    const server = await realServer(t, SEED);
    const sha256 = loadHostKey('', SEED).fingerprint;
    const md5 = rport(t, server, 'rp-md5', server.fingerprint.slice(0, 35));
    rport(t, server, 'rp-sha', sha256);
    await listed(server, 'rp-md5');
    await listed(server, 'rp-sha');
    await md5.waitFor(/server accepted the connection request \(.*, a stock RPort server\)/);

    // The target sends back each byte transformed, so both directions are checked.
    const echo = await target(t, (s) => s.on('data', (b: Buffer) => s.write(b.map((x) => 255 - x))));
    const made = await tunnel(server, 'rp-md5', echo);
    assert.equal(made.status, 200, JSON.stringify(made.body));
    const sent = Buffer.from(Array.from({ length: 300_000 }, (_, i) => i % 251));
    const r = await exchange(made.port, sent, sent.length);
    assert.equal(r.how, 'complete', `got ${r.got.length} bytes back of ${sent.length}`);
    assert.ok(r.got.equals(sent.map((x) => 255 - x)));

    // tunnel_allowed decides on the client: the real server's check_tunnel_allowed is answered false.
    const refused = await tunnel(server, 'rp-md5', echo, '127.0.0.2');
    assert.notEqual(refused.status, 200, JSON.stringify(refused.body));
    assert.match(JSON.stringify(refused.body), /not allowed/);

    const job = await command(server, 'rp-sha', '/usr/bin/printf interop-out');
    assert.equal(job.status, 'successful', JSON.stringify(job));
    assert.equal(job.result.stdout, 'interop-out');
    const denied = await fetchJson(server, 'POST', '/api/v1/clients/rp-sha/commands', {
      command: '/opt/not-allowed',
      timeout_sec: 30,
    });
    assert.match(JSON.stringify(denied.body), /command is not allowed/);
  },
);

test(
  'rport on a real RPort rportd: state.json shows connected and pings, WATCHDOG=1 reaches a real NOTIFY_SOCKET',
  { skip },
  async (t) => {
    const server = await realServer(t, SEED);
    const address = join(tmpDir(t), 'notify.sock');
    const rx = await notifyReceiver(t, address);
    const dir = tmpDir(t);
    rport(t, server, 'rp-watchdog', server.fingerprint, ['--watchdog-integration', '--data-dir', dir], {
      NOTIFY_SOCKET: address,
      WATCHDOG_USEC: '10000000',
    });
    const state = await eventually(
      () => {
        try {
          const s = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8'));
          return s.last_state === 'connected' && /^ping to 127\.0\.0\.1:\d+ succeeded within/.test(s.last_message)
            ? s
            : undefined;
        } catch {
          return undefined;
        }
      },
      30_000,
      'state.json with a ping',
    );
    assert.match(state.last_message, new RegExp(`^ping to 127\\.0\\.0\\.1:${server.port} succeeded within \\S+$`));
    await rx.waitFor(/WATCHDOG=1\\nSTATUS=ping to 127\.0\.0\.1:\d+ succeeded/, 30_000);
  },
);

test(
  "rport survives a real RPort rportd restart (reconnects with backoff), and a session still held is retried within max_retry_interval, not RPort's minutes",
  { skip },
  async (t) => {
    const fixed = { port: await freePort(), apiPort: await freePort(), dir: tmpDir(t, 'openrportd-') };
    const first = await realServer(t, SEED, fixed);
    const client = rport(t, first, 'rp-back', first.fingerprint);
    await listed(first, 'rp-back');
    // Marked before the stop: the client may see the connection go before stop() has seen the process exit.
    const mark = client.mark();
    await first.proc.stop();
    // Lost while connected, or (when the stop came mid-step) a failed attempt: either way it goes on retrying.
    await client.waitFor(/WARN {2}client: (connection to .* lost|attempt \d+ to .* failed)/, 30_000, mark);
    await client.waitFor(/Retrying in/, 30_000, mark);
    const second = await realServer(t, SEED, fixed);
    await listed(second, 'rp-back');
    await client.waitFor(/INFO {2}client: connected to/, 30_000, mark);

    // A second process with the same id: the real server answers "client is already connected", which is
    // retried on rport's backoff (max_retry_interval = 2s in these tests) until the first one leaves.
    const twin = rport(t, second, 'rp-back', second.fingerprint);
    await twin.waitFor(/failed: server refused the connection: client is already connected/, 30_000);
    await twin.waitFor(/Retrying in (\d+(\.\d+)?ms|[0-2](\.\d+)?s)\.\.\./, 30_000);
    assert.doesNotMatch(twin.output, /Retrying in ([3-9]|\d\d+)(\.\d+)?s/, 'no wait past max_retry_interval');
    await client.stop();
    await twin.waitFor(/INFO {2}client: connected to/, 30_000);
    await listed(second, 'rp-back');
  },
);
