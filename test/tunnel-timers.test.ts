// The tunnels' own clocks, in this process on a real SQLite store: auto-close needs neither the API nor a client.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Logger, LogSink } from '../src/log.js';
import { SqliteDb } from '../src/server/db/sqlite.js';
import { Store } from '../src/server/store/index.js';
import { TunnelManager } from '../src/server/tunnels/index.js';
import { cleanup, eventually, tmpDir } from '../harness/procs.js';

const policy = { ports: [], usedPorts: '', excludedPorts: '', bindAddresses: ['127.0.0.1'], maxPerClient: 5 };

test("auto-close is the tunnels' own: stored tunnels past or reaching their auto-close time are deleted after load(), with no API and no client", async (t) => {
  const store = new Store(new SqliteDb(tmpDir(t)));
  await store.migrate();
  cleanup(t, () => store.close());
  const now = Date.now();
  for (const [id, autoCloseAt] of [
    ['overdue', now - 60_000],
    ['soon', now + 300],
    ['kept', null],
  ] as const) {
    await store.tunnels.saveTunnel({
      id,
      client_id: 'c1',
      local_host: '127.0.0.1',
      local_port: 0,
      remote: '127.0.0.1:22',
      acl: '[]',
      idle_timeout_ms: 0,
      created_by: 'api',
      source: '',
      created_at: now,
    });
    await store.tunnels.saveTunnelOptions({ tunnel_id: id, scheme: '', lport_random: 0, auto_close_at: autoCloseAt });
  }
  const lines: string[] = [];
  let ended = 0;
  const tunnels = new TunnelManager(
    policy,
    new Logger(
      LogSink.lines((l) => lines.push(l)),
      'info',
      'tunnels',
    ),
    store,
    undefined,
    () => ended++,
  );
  cleanup(t, () => tunnels.stopTimers());
  await tunnels.load();
  const ids = async () => (await store.tunnels.tunnels()).map((r) => r.id);
  await eventually(
    async () => ((await ids()).length === 1 ? true : undefined),
    5000,
    'the auto-closed tunnels deleted',
  );
  assert.deepEqual(await ids(), ['kept']);
  assert.deepEqual(
    tunnels.all().map((x) => x.id),
    ['kept'],
  );
  assert.equal(ended, 2, 'each deletion told to the live views');
  assert.ok(
    lines.some((l) => l.includes('tunnel soon of client c1 reached its auto-close time: deleting it')),
    lines.join('\n'),
  );
});
