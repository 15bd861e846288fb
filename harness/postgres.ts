import { execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { Logger, LogSink } from '../src/log.js';
import { PostgresDb } from '../src/server/db/postgres.js';
import { accepting, cleanup, freePort, Proc, tmpDir, writeFile } from './procs.js';

/** Debian's PostgreSQL binaries (the newest installed), or undefined. */
function pgBin(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] && join(root, versions[0], 'bin');
}

function idOf(flag: '-u' | '-g', user: string): number | undefined {
  try {
    return Number(execFileSync('id', [flag, user], { encoding: 'utf8' }).trim());
  } catch {
    return undefined;
  }
}

/** Why the PostgreSQL tests cannot run here, or undefined when they can (CI installs postgresql). */
export function postgresMissing(): string | undefined {
  if (!pgBin()) return 'PostgreSQL is not installed (apt-get install postgresql; .ci/run does)';
  if (process.getuid?.() === 0 && idOf('-u', 'postgres') === undefined) return 'no postgres user to run PostgreSQL as';
  return undefined;
}

/** Why the HAProxy tests cannot run here, or undefined. */
export function haproxyMissing(): string | undefined {
  try {
    execFileSync('haproxy', ['-v'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'HAProxy is not installed (apt-get install haproxy; .ci/run does)';
  }
}

export interface Postgres {
  port: number;
  /** rportd flags that put the registry in this server. */
  flags: string[];
  /** Fast shutdown: open connections are cut, as when the server goes away. */
  stop(): Promise<void>;
  start(): Promise<void>;
}

/**
 * A private PostgreSQL cluster: initdb in a temp folder, its own port on 127.0.0.1, trust auth for the user
 * rport. PostgreSQL refuses to run as root: as root it runs as the postgres user.
 */
export async function startPostgres(t: TestContext): Promise<Postgres> {
  const bin = pgBin()!;
  const dir = tmpDir(t, 'rport-pg-');
  const data = join(dir, 'data');
  const sock = join(dir, 'sock');
  mkdirSync(sock);
  const asRoot = process.getuid?.() === 0;
  const ids = asRoot ? { uid: idOf('-u', 'postgres')!, gid: idOf('-g', 'postgres')! } : {};
  if (asRoot) for (const d of [dir, sock]) chownSync(d, ids.uid!, ids.gid!);
  execFileSync(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'rport', '--no-sync', '-E', 'UTF8'], {
    stdio: 'ignore',
    ...ids,
    cwd: dir,
    timeout: 60_000,
  });
  writeFile(
    data,
    'postgresql.auto.conf',
    'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 100\n',
  );
  const port = await freePort();
  let proc: Proc | undefined;
  const pg: Postgres = {
    port,
    flags: ['--db-type', 'postgres', '--db-host', `127.0.0.1:${port}`, '--db-name', 'postgres', '--db-user', 'rport'],
    async start() {
      proc = new Proc(
        spawn(join(bin, 'postgres'), ['-D', data, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-k', sock], {
          stdio: ['ignore', 'pipe', 'pipe'],
          ...ids,
          cwd: dir,
        }),
      );
      await proc.waitFor(/database system is ready to accept connections/, 30_000);
    },
    async stop() {
      if (!proc || proc.exit) return;
      proc.kill('SIGINT');
      await proc.exited;
    },
  };
  cleanup(t, () => pg.stop());
  await pg.start();
  return pg;
}

/** HAProxy in TCP mode, round robin over the backends, with health checks; resolves its front port. */
export async function startHaproxy(t: TestContext, backends: number[]): Promise<number> {
  const dir = tmpDir(t, 'rport-haproxy-');
  const port = await freePort();
  const cfg = writeFile(
    dir,
    'haproxy.cfg',
    `global
  maxconn 4096
defaults
  mode tcp
  timeout connect 2s
  timeout client 1h
  timeout server 1h
  retries 2
  option redispatch
frontend clients
  bind 127.0.0.1:${port}
  default_backend nodes
backend nodes
  balance roundrobin
  default-server inter 500ms fall 2 rise 2
${backends.map((p, i) => `  server n${i} 127.0.0.1:${p} check`).join('\n')}
`,
  );
  const proc = new Proc(spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] }));
  cleanup(t, () => proc.stop());
  await accepting(port, proc);
  return port;
}

/**
 * A node that looks alive in the database (a fresh heartbeat) but whose API port nobody listens on, holding
 * client "ghost-client": what a node that froze or lost its network looks like to the others.
 */
export async function plantGhostNode(pg: Postgres): Promise<void> {
  const db = await PostgresDb.open(
    { host: '127.0.0.1', port: pg.port, database: 'postgres', user: 'rport', password: '' },
    new Logger(LogSink.stderr(), 'error', 'test'),
  );
  const closedPort = await freePort();
  const now = Date.now();
  await db.run(
    'INSERT INTO nodes (id, api_url, client_address, public_host, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?)',
    ['ghost', `http://127.0.0.1:${closedPort}`, '', '127.0.0.1', now, now],
  );
  await db.run(
    "INSERT INTO clients (id, connected, node_id, session_id, auth_id) VALUES ('ghost-client', 1, 'ghost', 'g', 'bench')",
  );
  await db.close();
}
