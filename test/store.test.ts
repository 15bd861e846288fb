// The registry's store on both backends: the same checks on SQLite (a file) and on a private PostgreSQL.
import assert from 'node:assert/strict';
import test, { type TestContext } from 'node:test';
import { Logger, LogSink } from '../src/log.js';
import type { Db } from '../src/server/db/db.js';
import { PostgresDb } from '../src/server/db/postgres.js';
import { SqliteDb } from '../src/server/db/sqlite.js';
import type { JobRow } from '../src/server/store/jobs.js';
import { MIGRATIONS, Store, type ConnectedClient } from '../src/server/store/index.js';
import { postgresMissing, startPostgres, type Postgres } from '../harness/postgres.js';
import { blackHole, cleanup, eventually, tmpDir } from '../harness/procs.js';

const log = new Logger(LogSink.stderr(), 'error', 'test');
const pgMissing = postgresMissing();

let pg: Postgres | undefined;
let dbCount = 0;
/** A fresh database each: a file, or a new database in the one PostgreSQL server of this file. */
async function openDb(t: TestContext, kind: 'sqlite' | 'postgres'): Promise<Db> {
  if (kind === 'sqlite') return new SqliteDb(tmpDir(t));
  const admin = await PostgresDb.open(
    { host: '127.0.0.1', port: pg!.port, database: 'postgres', user: 'rport', password: '' },
    log,
  );
  const name = `t${process.pid}_${++dbCount}`;
  await admin.run(`CREATE DATABASE ${name}`);
  await admin.close();
  return PostgresDb.open({ host: '127.0.0.1', port: pg!.port, database: name, user: 'rport', password: '' }, log);
}

async function store(t: TestContext, kind: 'sqlite' | 'postgres'): Promise<Store> {
  const s = new Store(await openDb(t, kind));
  await s.migrate();
  cleanup(t, () => s.close());
  return s;
}

const client = (id: string, o: Partial<ConnectedClient> = {}): ConnectedClient => ({
  id,
  name: id,
  tags: '[]',
  hostname: 'h',
  os: 'linux',
  arch: 'amd64',
  version: '1',
  address: '127.0.0.1',
  auth_id: 'client1',
  pid: 100,
  process_start: 1_700_000_000_000,
  watchdog: null,
  node_id: 'node-a',
  session_id: 's1',
  ...o,
});

test('store on PostgreSQL and SQLite', async (t) => {
  if (pgMissing === undefined) pg = await startPostgres(t);
  for (const kind of ['sqlite', 'postgres'] as const) {
    const skip = kind === 'postgres' ? pgMissing : undefined;

    await t.test(
      `${kind}: migrations run once, and again is a no-op; a newer schema is refused by name`,
      { skip },
      async (t) => {
        const db = await openDb(t, kind);
        await db.migrate(MIGRATIONS);
        await db.migrate(MIGRATIONS);
        await assert.rejects(
          db.migrate(MIGRATIONS.slice(0, 2)),
          new RegExp(`schema version ${MIGRATIONS.length}, newer than this rportd knows \\(2\\): upgrade rportd`),
        );
        await db.close();
      },
    );

    await t.test(
      `${kind}: a client's row: restarts counted, a late disconnect of an old session leaves its successor connected`,
      { skip },
      async (t) => {
        const s = await store(t, kind);
        const at = 1_750_000_000_000; // beyond 32 bits: timestamps are BIGINT on PostgreSQL
        await s.clients.clientConnected(client('c1'), at);
        await s.clients.clientConnected(client('c1', { pid: 101, session_id: 's2', node_id: 'node-b' }), at + 1);
        await s.clients.clientDisconnected('c1', 's1', at + 2); // the first session's close, arriving late
        const row = (await s.clients.client('c1'))!;
        assert.equal(row.connected, 1);
        assert.equal(row.node_id, 'node-b');
        assert.equal(row.connected_at, at + 1);
        assert.deepEqual([...(await s.clients.restartsSince(at))], [['c1', 1]]);
        await s.clients.clientDisconnected('c1', 's2', at + 3);
        assert.equal((await s.clients.client('c1'))!.connected, 0);
        assert.equal(await s.clients.clientOwner('c1'), 'client1');
        assert.deepEqual(await s.clients.clientIdsOfCredential('client1'), ['c1']);
        assert.equal(await s.clients.clientCount(), 1);
      },
    );

    await t.test(
      `${kind}: a tunnel port is claimed once across the cluster; the tunnel takes it back on another node; a late release leaves a newer claim`,
      { skip },
      async (t) => {
        const s = await store(t, kind);
        assert.equal(await s.tunnels.claimPort(20_000, 'tun-1', 'node-a', 'claim-1'), true);
        assert.equal(
          await s.tunnels.claimPort(20_000, 'tun-2', 'node-b', 'claim-2'),
          false,
          'another tunnel cannot take a claimed port',
        );
        assert.equal(
          await s.tunnels.claimPort(20_000, 'tun-1', 'node-b', 'claim-3'),
          true,
          'its own tunnel, moved to node-b, takes it back',
        );
        await s.tunnels.releasePort(20_000, 'claim-1'); // node-a's release of the first listener, late
        assert.equal(await s.tunnels.claimPort(20_000, 'tun-2', 'node-b', 'claim-4'), false, 'the newer claim stands');
        await s.tunnels.releasePort(20_000, 'claim-3');
        assert.equal(await s.tunnels.claimPort(20_000, 'tun-2', 'node-b', 'claim-5'), true);
      },
    );

    await t.test(
      `${kind}: a node silent for the bound is swept: its clients released, its port claims freed; live nodes stay`,
      { skip },
      async (t) => {
        const s = await store(t, kind);
        const now = Date.now();
        const node = (id: string, heartbeat_at: number) => ({
          id,
          api_url: '',
          client_address: '',
          public_host: '127.0.0.1',
          started_at: now - 60_000,
          heartbeat_at,
        });
        await s.nodes.heartbeat(node('dead', now - 20_000));
        await s.nodes.heartbeat(node('live', now));
        await s.clients.clientConnected(client('on-dead', { node_id: 'dead' }), now);
        await s.clients.clientConnected(client('on-live', { node_id: 'live' }), now);
        await s.tunnels.claimPort(20_001, 'tun-dead', 'dead', 'c');
        assert.deepEqual(await s.nodes.sweepDeadNodes(now - 15_000, now), ['dead']);
        assert.deepEqual(
          (await s.nodes.nodes()).map((n) => n.id),
          ['live'],
        );
        assert.equal((await s.clients.client('on-dead'))!.connected, 0);
        assert.equal((await s.clients.client('on-live'))!.connected, 1);
        assert.equal(await s.tunnels.claimPort(20_001, 'tun-other', 'live', 'd'), true, "the dead node's port is free");
      },
    );

    await t.test(
      `${kind}: running jobs: a restarted node gives up only its own; a dead node's are given up by the sweep`,
      { skip },
      async (t) => {
        const db = await openDb(t, kind);
        const s = new Store(db);
        await s.migrate();
        cleanup(t, () => s.close());
        const jobs = s.jobs;
        const now = Date.now();
        const job = (jid: string, node_id: string): JobRow => ({
          jid,
          client_id: 'c',
          client_name: 'c',
          multi_job_id: null,
          status: 'running',
          command: '/usr/bin/true',
          is_script: 0,
          interpreter: '',
          cwd: '',
          timeout_sec: 60,
          pid: 7,
          created_by: 'admin',
          started_at: now,
          finished_at: null,
          exit_code: null,
          error: '',
          stdout: 'a\0b',
          stderr: '',
          node_id,
        });
        for (const [jid, node] of [
          ['on-a', 'node-a'],
          ['on-b', 'node-b'],
          ['on-dead', 'dead'],
        ] as const)
          await jobs.insertJob(job(jid, node));
        await jobs.abandonRunning('node-a', 'unknown', 'rportd restarted');
        assert.equal((await jobs.job('on-a'))!.status, 'unknown');
        assert.equal((await jobs.job('on-b'))!.status, 'running', "another node's job is not this node's to give up");
        assert.equal(
          (await jobs.job('on-a'))!.stdout,
          'a\uFFFDb',
          'output with NUL is kept, NUL as U+FFFD on every backend',
        );
        await s.nodes.heartbeat({
          id: 'dead',
          api_url: '',
          client_address: '',
          public_host: '127.0.0.1',
          started_at: now - 60_000,
          heartbeat_at: now - 20_000,
        });
        await s.nodes.sweepDeadNodes(now - 15_000, now);
        assert.equal((await jobs.job('on-dead'))!.status, 'unknown');
        assert.match((await jobs.job('on-dead'))!.error, /node dead, which sent the job, stopped heart-beating/);
        assert.equal((await jobs.job('on-b'))!.status, 'running');
      },
    );

    await t.test(`${kind}: the cluster secret is the first node's; credentials are added once`, { skip }, async (t) => {
      const s = await store(t, kind);
      assert.equal(await s.nodes.clusterSecret('first'), 'first');
      assert.equal(await s.nodes.clusterSecret('second'), 'first');
      assert.equal(await s.credentials.addCredential('x', '$2b$10$hash', 1), true);
      assert.equal(await s.credentials.addCredential('x', '$2b$10$other', 2), false);
      assert.equal(await s.credentials.credential('x'), '$2b$10$hash');
    });

    await t.test(`${kind}: a failed transaction leaves nothing behind`, { skip }, async (t) => {
      const db = await openDb(t, kind);
      await db.migrate(MIGRATIONS);
      await assert.rejects(
        db.tx(async (q) => {
          await q.run("INSERT INTO credentials (id, password_hash, created_at) VALUES ('y', 'h', 1)");
          await q.run('INSERT INTO no_such_table VALUES (1)');
        }),
      );
      assert.equal(await db.get('SELECT * FROM credentials WHERE id = ?', ['y']), undefined);
      await db.close();
    });
  }

  await t.test(
    'postgres: a server that does not answer fails a query within its bound, and the event loop runs meanwhile',
    { skip: pgMissing },
    async (t) => {
      const hole = await blackHole(t);
      const db = await PostgresDb.open(
        { host: '127.0.0.1', port: hole.port, database: 'rport', user: 'rport', password: '' },
        log,
      );
      let ticks = 0;
      const ticker = setInterval(() => ticks++, 100);
      const started = Date.now();
      await assert.rejects(db.get('SELECT 1'), /timeout/i);
      clearInterval(ticker);
      const took = Date.now() - started;
      assert.ok(took < 15_000, `failed after ${took} ms`);
      assert.ok(ticks >= (took / 100) * 0.5, `the event loop ran ${ticks} ticks in ${took} ms`);
      await db.close();
    },
  );

  await t.test(
    'postgres: a connection that breaks inside a transaction fails that transaction, not the process',
    { skip: pgMissing },
    async (t) => {
      const db = await openDb(t, 'postgres');
      cleanup(t, () => db.close());
      // Under the 5 s statement timeout: the test ends it sooner.
      const failed = assert.rejects(
        db.tx(async (q) => {
          await q.run('SELECT pg_sleep(4)');
        }),
        /terminat/,
      );
      // What a PostgreSQL shutting down does to each connection: a FATAL error, then the socket closes.
      const sleeping = "SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(4)'";
      await eventually(
        async () => ((await db.all(sleeping)).length ? true : undefined),
        3_000,
        'the transaction running',
      );
      await db.run(`SELECT pg_terminate_backend(pid) FROM (${sleeping}) AS s`);
      await failed;
      assert.deepEqual(await db.get('SELECT 1 AS one'), { one: 1 }, 'the pool goes on with a new connection');
    },
  );

  await t.test('postgres: the pool reconnects when the server comes back', { skip: pgMissing }, async (t) => {
    const s = await store(t, 'postgres');
    await s.credentials.addCredential('before', 'h', 1);
    await pg!.stop();
    await assert.rejects(s.credentials.credential('before'));
    await pg!.start();
    assert.equal(await s.credentials.credential('before'), 'h');
  });
});
