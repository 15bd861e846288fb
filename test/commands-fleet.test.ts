import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { RportClient } from '../src/client/client.js';
import type { ClientObserver } from '../src/watchdog/observer.js';
import { StepClock } from '../src/watchdog/step-clock.js';
import { CLIENT_KEYS, clientConfig } from '../src/config/client-config.js';
import { loadConfig } from '../src/config/loader.js';
import { RPORT_CLIENT_NAMES } from '../src/config/rport-names.js';
import { Logger, LogSink } from '../src/log.js';
import { apiCall } from './helpers/jobs-api.js';
import {
  cleanup,
  eventually,
  startServer,
  tmpDir,
  writeFile,
  CLIENT_AUTH,
  type ServerHandle,
} from '../harness/procs.js';

/** Real RportClients in the test's process (as bench/fleet.ts runs them): many clients, little memory. */
function fleetClient(t: TestContext, server: ServerHandle, id: string, tags: string[], conf = ''): RportClient {
  const dir = tmpDir(t);
  const file = writeFile(dir, 'rport.conf', conf);
  const flags = new Map<string, string[]>([
    ['server', [`127.0.0.1:${server.port}`]],
    ['auth', [CLIENT_AUTH]],
    ['id', [id]],
    ['keep-alive', ['5s']],
    ['max-retry-interval', ['2s']],
    ['data-dir', [dir]],
    ...(tags.length ? [['tags', [tags.join(',')]] as [string, string[]]] : []),
  ]);
  const cfg = clientConfig(loadConfig(CLIENT_KEYS, file, flags, RPORT_CLIENT_NAMES));
  const observer: ClientObserver = {
    facts: () => ({ integration: false, systemd_watchdog_sec: null, heartbeat_budget_sec: 0, last_state: 'connected' }),
    connected: () => undefined,
    pinged: () => undefined,
    retrying: () => undefined,
  };
  const c = new RportClient(
    cfg,
    new Logger(LogSink.file(join(dir, 'rport.log')), 'info', id),
    observer,
    new StepClock(),
  );
  void c.run();
  cleanup(t, () => c.stop());
  return c;
}

async function connected(server: ServerHandle, ids: string[]): Promise<void> {
  await eventually(
    async () => {
      const list = (await apiCall(server, 'GET', '/api/v1/clients?connected=true&page[limit]=500')).body.data as Array<{
        id: string;
      }>;
      return ids.every((id) => list.some((c) => c.id === id)) || undefined;
    },
    20_000,
    `clients ${ids.length} connected`,
  );
}

async function multiDone(server: ServerHandle, jid: string, jobs: number): Promise<any> {
  return eventually(
    async () => {
      const m = (await apiCall(server, 'GET', `/api/v1/commands/${jid}`)).body.data;
      return m.jobs.length === jobs && m.jobs.every((j: { status: string }) => j.status !== 'running') ? m : undefined;
    },
    30_000,
    `multi-client job ${jid}`,
  );
}

test('a multi-client job over 20 clients, one of them offline, by client_ids and by tag', async (t) => {
  const server = await startServer(t);
  const ids = Array.from({ length: 20 }, (_, i) => `node-${String(i).padStart(2, '0')}`);
  const clients = ids.map((id) => fleetClient(t, server, id, id === 'node-07' ? ['db'] : ['web']));
  await connected(server, ids);
  // node-13 goes offline: known to the server, not connected.
  clients[13]!.stop();
  await eventually(
    async () => (await apiCall(server, 'GET', '/api/v1/clients/node-13')).body.data.connected === false || undefined,
    10_000,
    'node-13 offline',
  );

  const r = await apiCall(server, 'POST', '/api/v1/commands', {
    command: '/usr/bin/uname -s',
    client_ids: ids,
    execute_concurrently: true,
    timeout_sec: 30,
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const m = await multiDone(server, r.body.data.jid, 20);
  assert.equal(m.concurrent, true);
  assert.equal(m.created_by, 'admin');
  assert.deepEqual(m.client_ids, ids);
  const byClient = new Map<string, any>(m.jobs.map((j: { client_id: string }) => [j.client_id, j]));
  for (const id of ids) {
    const j = byClient.get(id);
    if (id === 'node-13') {
      assert.equal(j.status, 'failed');
      assert.equal(j.error, 'client is not connected');
    } else {
      assert.equal(j.status, 'successful', `${id}: ${JSON.stringify(j)}`);
      assert.equal(j.result.stdout, 'Linux\n');
      assert.equal(j.multi_job_id, m.jid);
    }
  }
  const summaries = await apiCall(server, 'GET', '/api/v1/commands');
  assert.equal(summaries.body.data[0].jid, m.jid);

  const byTag = await apiCall(server, 'POST', '/api/v1/commands', {
    command: '/usr/bin/true',
    tags: { tags: ['db'] },
    execute_concurrently: true,
  });
  assert.equal(byTag.status, 200, JSON.stringify(byTag.body));
  const tagged = await multiDone(server, byTag.body.data.jid, 1);
  assert.equal(tagged.jobs[0].client_id, 'node-07');
  assert.equal(tagged.jobs[0].status, 'successful');

  const unknown = await apiCall(server, 'POST', '/api/v1/commands', {
    command: '/usr/bin/true',
    client_ids: ['node-01', 'ghost'],
  });
  assert.equal(unknown.status, 404);
  const groups = await apiCall(server, 'POST', '/api/v1/commands', {
    command: '/usr/bin/true',
    group_ids: ['g1'],
    client_ids: ['node-01'],
  });
  assert.equal(groups.status, 400);
});

test('abort_on_error: a sequential job stops at the first client that fails; without it, it goes on', async (t) => {
  const server = await startServer(t);
  // b refuses the command (its own filter), so its job fails.
  fleetClient(t, server, 'a', []);
  fleetClient(t, server, 'b', [], "[remote-commands]\ndeny = ['hostname']\n");
  fleetClient(t, server, 'c', []);
  await connected(server, ['a', 'b', 'c']);

  const r = await apiCall(server, 'POST', '/api/v1/commands', {
    command: '/usr/bin/hostname',
    client_ids: ['a', 'b', 'c'],
  });
  assert.equal(r.status, 200);
  const m = await multiDone(server, r.body.data.jid, 2);
  assert.equal(m.abort_on_err, true, "RPort's default");
  assert.deepEqual(
    m.jobs.map((j: { client_id: string; status: string }) => `${j.client_id}:${j.status}`),
    ['a:successful', 'b:failed'],
  );
  assert.match(m.jobs[1].error, /command is not allowed/);
  // Sequential: b started after a had finished.
  assert.ok(Date.parse(m.jobs[1].started_at) >= Date.parse(m.jobs[0].finished_at));

  const goOn = await apiCall(server, 'POST', '/api/v1/commands', {
    command: '/usr/bin/hostname',
    client_ids: ['a', 'b', 'c'],
    abort_on_error: false,
  });
  const all = await multiDone(server, goOn.body.data.jid, 3);
  assert.deepEqual(
    all.jobs.map((j: { client_id: string; status: string }) => `${j.client_id}:${j.status}`),
    ['a:successful', 'b:failed', 'c:successful'],
  );
});
