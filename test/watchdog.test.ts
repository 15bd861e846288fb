import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  blackHole,
  eventually,
  HANG_REQUEST,
  freePort,
  notifyReceiver,
  run,
  runtimeRunsAs,
  startClient,
  startServer,
  tmpDir,
} from '../harness/procs.js';

const GO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?(Z|[+-]\d\d:\d\d)$/;

function readState(dir: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8'));
  } catch {
    return undefined;
  }
}

function waitState(
  dir: string,
  check: (s: Record<string, any>) => boolean,
  ms = 10_000,
  what = 'state',
): Promise<Record<string, any>> {
  return eventually(
    () => {
      const s = readState(dir);
      return s && check(s) ? s : undefined;
    },
    ms,
    what,
  );
}

test('state.json on every event: initialized, reconnecting, connected, ping; fields and formats as the spec says', async (t) => {
  const hole = await blackHole(t);
  const dir = tmpDir(t);
  const client = startClient(t, `127.0.0.1:${hole.port}`, [
    '--watchdog-integration',
    '--data-dir',
    dir,
    '--connect-timeout',
    '2s',
    '--keep-alive',
    '1s',
  ]);

  const init = await waitState(dir, (s) => s.last_state === 'initialized', 5000, 'initialized');
  assert.deepEqual(Object.keys(init), [
    'last_update',
    'last_update_ts',
    'last_state',
    'last_message',
    'pid',
    'next_update_by',
    'next_update_by_ts',
  ]);
  assert.equal(init.last_message, '');
  assert.equal(init.pid, client.pid);
  assert.match(init.last_update, GO_TIME);
  assert.equal(init.last_update_ts, Math.floor(Date.parse(init.last_update) / 1000));
  assert.ok(init.next_update_by_ts >= init.last_update_ts + 2, 'promises the next write after the 2s attempt');
  assert.equal(statSync(join(dir, 'state.json')).mode & 0o777, 0o644);

  const retry = await waitState(dir, (s) => s.last_state === 'reconnecting', 5000, 'reconnecting');
  assert.match(retry.last_message, /^Retrying in (\d+(\.\d+)?(ms|s))\.\.\.$/);

  await hole.close();
  const server = await startServer(t, [], { port: hole.port, apiPort: await freePort(), dataDir: tmpDir(t) });
  const conn = await waitState(dir, (s) => s.last_state === 'connected', 8000, 'connected');
  assert.match(
    conn.last_message,
    new RegExp(
      `^(connected to 127\\.0\\.0\\.1:${server.port} within|ping to 127\\.0\\.0\\.1:${server.port} succeeded within) \\d+(\\.\\d+)?(µs|ms|s)$`,
    ),
  );
  const ping = await waitState(dir, (s) => s.last_message.startsWith('ping to'), 5000, 'ping');
  assert.match(
    ping.last_message,
    new RegExp(`^ping to 127\\.0\\.0\\.1:${server.port} succeeded within \\d+(\\.\\d+)?(µs|ms)$`),
  );
  assert.ok(ping.next_update_by_ts >= ping.last_update_ts + 1);
});

test('a reader in a tight loop sees only complete JSON across thousands of rewrites', async (t) => {
  const server = await startServer(t);
  const dir = tmpDir(t);
  startClient(t, `127.0.0.1:${server.port}`, [
    '--watchdog-integration',
    '--watchdog-interval',
    '1ms',
    '--data-dir',
    dir,
  ]);
  await waitState(dir, (s) => s.last_state === 'connected');
  const seen = new Set<string>();
  let reads = 0;
  // Until 1000 distinct rewrites were read whole, however long a loaded machine takes; a minute is the failure bound.
  const end = Date.now() + 60_000;
  while (Date.now() < end && seen.size < 1000) {
    const text = readFileSync(join(dir, 'state.json'), 'utf8');
    const doc = JSON.parse(text); // throws, failing the test, on an empty or partial file
    assert.equal(doc.last_state, 'connected');
    seen.add(doc.last_update);
    reads++;
    if (reads % 50 === 0) await new Promise((r) => setImmediate(r));
  }
  assert.ok(seen.size >= 1000, `only ${seen.size} distinct rewrites seen in ${reads} reads`);
});

test(
  'a state.json that cannot be written is logged once and does not stop the client',
  {
    skip:
      !runtimeRunsAs(65534) &&
      `needs root, and ${process.execPath} executable by nobody, to run the client as another user`,
  },
  async (t) => {
    const server = await startServer(t);
    const parent = tmpDir(t);
    chmodSync(parent, 0o755);
    const dir = join(parent, 'readonly');
    mkdirSync(dir, { mode: 0o555 });
    chmodSync(dir, 0o555);
    const client = startClient(
      t,
      `127.0.0.1:${server.port}`,
      ['--watchdog-integration', '--watchdog-interval', '200ms', '--data-dir', dir],
      {},
      { uid: 65534 },
    );
    await client.waitFor(/ping to .* succeeded/);
    await client.waitFor(/ping to .* succeeded/, 5000, client.mark());
    const errors = client.lines.filter((l) => l.includes('cannot write'));
    assert.equal(errors.length, 1, client.output);
    assert.match(
      errors[0]!,
      /ERROR watchdog: cannot write .*readonly\/state\.json \(EACCES\): a supervisor reading it will think the client hangs; the client keeps running/,
    );
    assert.equal(readState(dir), undefined);
  },
);

for (const kind of ['path', 'abstract'] as const) {
  test(`sd_notify to a real datagram socket (${kind}): READY=1, WATCHDOG=1 per event with STATUS=, heartbeats, STOPPING=1`, async (t) => {
    const address =
      kind === 'path' ? join(tmpDir(t), 'notify.sock') : `@rport-test-notify-${process.pid}-${Date.now()}`;
    const rx = await notifyReceiver(t, address);
    const server = await startServer(t);
    const dir = tmpDir(t);
    const client = startClient(t, `127.0.0.1:${server.port}`, ['--watchdog-integration', '--data-dir', dir], {
      NOTIFY_SOCKET: address,
      WATCHDOG_USEC: '2000000',
    });
    await client.waitFor(
      new RegExp(`DEBUG watchdog: Using NOTIFY_SOCKET ${address} for systemd watchdog integration$`),
    );
    await client.waitFor(/ping to .* succeeded/);
    await rx.waitFor(/"WATCHDOG=1"/, 3000); // a heartbeat between events: WATCHDOG=1 alone
    assert.equal((await client.stop()).code, 0);
    await rx.waitFor(/STOPPING=1/, 3000);
    const m = rx.messages();
    assert.match(
      m[0]!,
      new RegExp(
        `^READY=1\\nSTATUS=initialized: connecting to 127\\.0\\.0\\.1:${server.port}\\nMAINPID=${client.pid}$`,
      ),
    );
    assert.equal(m[1], 'WATCHDOG=1\nSTATUS=initialized', 'the initialized event');
    assert.ok(
      m.some((x) =>
        new RegExp(`^WATCHDOG=1\\nSTATUS=connected to 127\\.0\\.0\\.1:${server.port} within \\S+$`).test(x),
      ),
      m.join(' | '),
    );
    assert.ok(
      m.some((x) => /^WATCHDOG=1\nSTATUS=ping to 127\.0\.0\.1:\d+ succeeded within \S+$/.test(x)),
      m.join(' | '),
    );
    assert.equal(m[m.length - 1], 'STOPPING=1\nSTATUS=stopping');
    assert.match(client.output, /systemd watchdog armed \(WatchdogSec=2s\): WATCHDOG=1 on every event and every 1s/);
  });
}

test('no NOTIFY_SOCKET, or WATCHDOG_PID of another process: said at debug level, no heartbeats armed', async (t) => {
  const server = await startServer(t);
  const plain = startClient(t, `127.0.0.1:${server.port}`, []);
  await plain.waitFor(/DEBUG watchdog: NOTIFY_SOCKET is not set: not using systemd watchdog integration/);
  const rx = await notifyReceiver(t, join(tmpDir(t), 'n.sock'));
  const other = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'other'], {
    NOTIFY_SOCKET: join(tmpDir(t), 'none.sock'),
    WATCHDOG_USEC: '1000000',
    WATCHDOG_PID: '1',
  });
  await other.waitFor(/connected to/);
  await other.waitFor(/ERROR watchdog: sending to NOTIFY_SOCKET .* failed \(errno 2\)/);
  assert.doesNotMatch(other.output, /systemd watchdog armed/);
  assert.equal(rx.messages().length, 0);
});

test('the heartbeat budget is logged; a WatchdogSec below it gets a warning that names the WatchdogSec to use', async (t) => {
  const rx = await notifyReceiver(t, join(tmpDir(t), 'n.sock'));
  const server = await startServer(t);
  const timings = [
    '--keep-alive',
    '3m',
    '--keep-alive-timeout',
    '30s',
    '--max-retry-interval',
    '3m',
    '--connect-timeout',
    '20s',
  ];
  // Pinned, so that the only warning it could log is about the watchdog (an unset fingerprint warns too).
  const client = startClient(t, `127.0.0.1:${server.port}`, [
    '--watchdog-integration',
    '--fingerprint',
    server.fingerprint,
    ...timings,
  ]);
  await client.waitFor(/connected to/);
  assert.match(
    client.output,
    /longest gap between updates 3m31s \(connected: keep_alive \+ keep_alive_timeout \+ 1s = 3m31s; reconnecting: max_retry_interval \+ connect_timeout \+ 1s = 3m21s\)/,
  );
  assert.doesNotMatch(client.output, /WARN/);
  const withSystemd = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'b', '--watchdog-integration', ...timings], {
    NOTIFY_SOCKET: rx.lines.length ? (rx.child.spawnargs[2] as string) : '',
    WATCHDOG_USEC: '10000000',
  });
  await withSystemd.waitFor(/connected to/);
  assert.match(
    withSystemd.output,
    /WARN {2}watchdog: systemd WatchdogSec=10s is below the heartbeat budget 3m31s: this client covers the gap with in-step heartbeats, but a client relying on events alone would be killed while healthy; WatchdogSec=221 covers the budget/,
  );
});

test('a hung step stops the state.json heartbeat: rport-watchdog check turns from healthy to hung', async (t) => {
  const server = await startServer(t);
  const dir = tmpDir(t);
  const client = startClient(
    t,
    `127.0.0.1:${server.port}`,
    ['--watchdog-integration', '--watchdog-interval', '300ms', '--data-dir', dir, '--connect-timeout', '1s'],
    HANG_REQUEST,
  );
  const first = await waitState(dir, () => true, 5000);
  assert.equal(first.last_state, 'initialized');
  const check = (extra: string[] = []) => {
    const p = run('rport-watchdog', ['check', '--state', join(dir, 'state.json'), '--grace', '1s', ...extra]);
    return p.exited.then((e) => ({ code: e.code, out: p.output }));
  };
  assert.deepEqual((await check()).code, 0);
  await client.waitFor(
    /ERROR watchdog: connection step "connection request" is past its deadline: withholding watchdog heartbeats/,
    5000,
  );
  const hung = await eventually(
    async () => {
      const r = await check();
      return r.code === 1 ? r : undefined;
    },
    8000,
    'hung verdict',
  );
  assert.match(
    hung.out,
    /^hung: last update \d+s ago \(initialized\); it promised to write again by \d+s ago \(grace 1s\)$/,
  );
  assert.equal(client.exit, undefined, 'the process itself is still running: only a supervisor can tell');
});
