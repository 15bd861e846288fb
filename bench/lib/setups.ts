import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OPENRPORT_BIN, openrportClientConf, openrportdConf } from '../../harness/openrport.js';
import { apiRequest, freePort, Proc, run } from '../../harness/procs.js';
import { startSshd } from '../../harness/sshd.js';
import { portOpen } from './traffic.js';

/** Everything a scenario started, stopped in reverse order at the end (also on failure). */
export class Cleanup {
  private readonly fns: Array<() => unknown> = [];
  add(fn: () => unknown): void {
    this.fns.push(fn);
  }
  async run(): Promise<void> {
    for (const fn of this.fns.reverse()) await fn();
    this.fns.length = 0;
  }
}

/** Runs `fn` with a Cleanup that stops whatever it started, also when it throws. */
export async function withCleanup<T>(fn: (c: Cleanup) => Promise<T>): Promise<T> {
  const c = new Cleanup();
  try {
    return await fn(c);
  } finally {
    await c.run();
  }
}

export function tempDir(c: Cleanup, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  c.add(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface RportStack {
  server: Proc;
  client: Proc;
  serverPort: number;
  apiPort: number;
  api(method: string, path: string): Promise<any>;
}

const API_AUTH = 'admin:bench-api';
export const BENCH_AUTH = 'bench:bench-secret';
/** The bench's fleets and handshake bursts all come from 127.0.0.1: one address may have them all pending at once. */
export const BENCH_ADMISSION = [
  '--max-unauthenticated-connections',
  '20000',
  '--max-unauthenticated-connections-per-address',
  '20000',
];

/** rportd on loopback; with `via` the clients connect through that port (a delay relay) instead. */
export async function startRportd(c: Cleanup, extra: string[] = []): Promise<Omit<RportStack, 'client'>> {
  const serverPort = await freePort();
  const apiPort = await freePort();
  const server = run('rportd', [
    '--address',
    `127.0.0.1:${serverPort}`,
    '--api-address',
    `127.0.0.1:${apiPort}`,
    '--api-auth',
    API_AUTH,
    '--auth',
    BENCH_AUTH,
    '--data-dir',
    tempDir(c, 'rportd-bench-'),
    '--log-level',
    'warn',
    ...BENCH_ADMISSION,
    ...extra,
  ]);
  c.add(() => server.stop());
  await portOpen(apiPort);
  const api = async (method: string, path: string) => {
    const res = await apiRequest(apiPort, method, path, { auth: API_AUTH });
    if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  };
  return { server, serverPort, apiPort, api };
}

/**
 * rportd + one rport client + a tunnel from a server port to each of `targetPorts` on the client's side.
 * `via(serverPort)` puts something (a delay relay) between client and server.
 */
export async function rportTunnels(
  c: Cleanup,
  targetPorts: number[],
  via?: (serverPort: number) => Promise<number>,
): Promise<RportStack & { entries: number[] }> {
  const d = await startRportd(c);
  const port = via ? await via(d.serverPort) : d.serverPort;
  const client = run('rport', [
    '--server',
    `127.0.0.1:${port}`,
    '--auth',
    BENCH_AUTH,
    '--id',
    'bench-client',
    '--log-level',
    'info',
    '--data-dir',
    tempDir(c, 'rport-bench-'),
  ]);
  c.add(() => client.stop());
  await client.waitFor(/connected to/, 15_000);
  const entries: number[] = [];
  for (const target of targetPorts) {
    const t = await d.api('PUT', `/api/v1/clients/bench-client/tunnels?remote=127.0.0.1:${target}&local=127.0.0.1:0`);
    entries.push(Number(t.data.local.split(':').pop()));
  }
  return { ...d, client, entries };
}

/** A private sshd (its own host key and config, never the system's) and `ssh -R` to `targetPort`. */
export async function opensshTunnels(
  c: Cleanup,
  targetPorts: number[],
  via?: (sshdPort: number) => Promise<number>,
): Promise<{ entries: number[]; sshd: Proc; ssh: Proc }> {
  const {
    port: sshdPort,
    userKey,
    proc: sshd,
  } = await startSshd(tempDir(c, 'sshd-bench-'), (fn) => c.add(fn), [
    'AllowTcpForwarding yes',
    'Ciphers aes128-gcm@openssh.com,chacha20-poly1305@openssh.com',
  ]);
  const connectPort = via ? await via(sshdPort) : sshdPort;
  const entries: number[] = [];
  for (const _ of targetPorts) entries.push(await freePort());
  const forwards = targetPorts.flatMap((t, i) => ['-R', `127.0.0.1:${entries[i]}:127.0.0.1:${t}`]);
  const ssh = new Proc(
    spawn(
      'ssh',
      [
        '-N',
        '-T',
        '-c',
        'aes128-gcm@openssh.com',
        '-i',
        userKey,
        '-p',
        String(connectPort),
        '-o',
        'StrictHostKeyChecking=no',
        '-o',
        'UserKnownHostsFile=/dev/null',
        '-o',
        'BatchMode=yes',
        '-o',
        'ExitOnForwardFailure=yes',
        '-o',
        'LogLevel=ERROR',
        ...forwards,
        'root@127.0.0.1',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    ),
  );
  c.add(() => ssh.stop());
  for (const e of entries) await portOpen(e, 15_000);
  return { entries, sshd, ssh };
}

/**
 * The real openrport 0.9.13 pair (their rportd, their client) with a tunnel to each of `targetPorts`, made
 * through the real server's API: what an RPort user runs today, measured beside rport and OpenSSH.
 */
export async function openrportTunnels(
  c: Cleanup,
  targetPorts: number[],
): Promise<{ entries: number[]; server: Proc; client: Proc }> {
  const [port, apiPort] = [await freePort(), await freePort()];
  const dir = tempDir(c, 'openrportd-bench-');
  const conf = join(dir, 'rportd.conf');
  writeFileSync(
    conf,
    openrportdConf({ port, apiPort, seed: 'bench-seed', auth: BENCH_AUTH, apiAuth: API_AUTH, dir, logLevel: 'error' }),
  );
  // Their rportd logs its fingerprint at info: the client takes none here (it then trusts any host key).
  const server = new Proc(spawn(join(OPENRPORT_BIN, 'rportd'), ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] }));
  c.add(() => server.stop());
  await portOpen(apiPort, 15_000);
  await portOpen(port, 15_000);
  const clientDir = tempDir(c, 'openrport-bench-');
  const clientConf = join(clientDir, 'rport.conf');
  writeFileSync(
    clientConf,
    openrportClientConf({
      server: `127.0.0.1:${port}`,
      fingerprint: '',
      auth: BENCH_AUTH,
      id: 'bench-openrport',
      dir: clientDir,
      tunnelAllowed: '127.0.0.1',
      remotes: [],
      logLevel: 'info',
    }),
  );
  const client = new Proc(
    spawn(join(OPENRPORT_BIN, 'rport'), ['-c', clientConf], { stdio: ['ignore', 'pipe', 'pipe'] }),
  );
  c.add(() => client.stop());
  await client.waitFor(/Connected to/, 15_000);
  const entries: number[] = [];
  for (const target of targetPorts) {
    const res = await fetch(
      `http://127.0.0.1:${apiPort}/api/v1/clients/bench-openrport/tunnels?remote=127.0.0.1:${target}`,
      {
        method: 'PUT',
        headers: { authorization: `Basic ${Buffer.from(API_AUTH).toString('base64')}` },
        signal: AbortSignal.timeout(15_000),
      },
    );
    const body = (await res.json()) as { data?: { lport?: string } };
    if (!res.ok) throw new Error(`openrport tunnel to ${target}: ${res.status} ${JSON.stringify(body)}`);
    entries.push(Number(body.data?.lport));
  }
  return { entries, server, client };
}

/**
 * A TCP relay that delays everything by `oneWayMs` in each direction: a long link (RTT = 2 x oneWayMs)
 * without netem, which needs a kernel module these machines do not have. Bandwidth is not limited.
 */
export async function delayRelay(c: Cleanup, targetPort: number, oneWayMs: number): Promise<number> {
  const sockets = new Set<Socket>();
  const delayed = (from: Socket, to: Socket) => {
    from.on('data', (b: Buffer) => setTimeout(() => to.write(b), oneWayMs));
    from.on('end', () => setTimeout(() => to.end(), oneWayMs));
    from.on('error', () => to.destroy());
    from.on('close', () => setTimeout(() => to.destroy(), oneWayMs + 5));
  };
  const server = createServer((inbound) => {
    const outbound = connect(targetPort, '127.0.0.1');
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    delayed(inbound, outbound);
    delayed(outbound, inbound);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  c.add(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  );
  return (server.address() as { port: number }).port;
}
