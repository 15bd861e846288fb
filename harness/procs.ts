import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

export const CLI_DIR = fileURLToPath(new URL('../src/cli/', import.meta.url));
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/**
 * A port nobody listens on, for a server the test starts (and may restart on it). Drawn from 10000-19999:
 * below the kernel's ephemeral range, so no outgoing connection or listen(0) takes it, and below RPort's
 * default used_ports (20000-30000) for tunnels. Test files run side by side and a server takes a second to
 * bind what it was given: a lock file per port (PORT_LOCKS) keeps it this process's until the process ends,
 * so no other file is handed the same port meanwhile. A lock whose process is gone is taken over.
 */
export async function freePort(): Promise<number> {
  mkdirSync(PORT_LOCKS, { recursive: true });
  for (;;) {
    const port = 10_000 + Math.floor(Math.random() * 10_000);
    if (!lockPort(port)) continue;
    const free = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (free) return port;
  }
}

const PORT_LOCKS = join(tmpdir(), 'rport-test-ports');
const lockedPorts: string[] = [];
process.on('exit', () => {
  for (const f of lockedPorts) rmSync(f, { force: true });
});

/** Takes `port` for this process: false when another live process holds it. */
function lockPort(port: number, retry = true): boolean {
  const file = join(PORT_LOCKS, String(port));
  try {
    writeFileSync(file, String(process.pid), { flag: 'wx' });
    lockedPorts.push(file);
    return true;
  } catch {
    let holder: number;
    try {
      holder = Number(readFileSync(file, 'utf8'));
    } catch {
      return false;
    }
    if (!retry || holder === process.pid || alive(holder)) return false;
    rmSync(file, { force: true });
    return lockPort(port, false);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const cleanups = new WeakMap<TestContext, Array<() => unknown>>();

/** Runs `fn` when the test ends, last registered first: processes stop before their folders go. */
export function cleanup(t: TestContext, fn: () => unknown): void {
  let stack = cleanups.get(t);
  if (!stack) {
    const fns: Array<() => unknown> = [];
    cleanups.set(t, fns);
    t.after(async () => {
      for (const f of fns.reverse()) await f();
    });
    stack = fns;
  }
  stack.push(fn);
}

export function tmpDir(t: TestContext, prefix = 'rport-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cleanup(t, () => rmSync(dir, { recursive: true, force: true, maxRetries: 3 }));
  return dir;
}

export function writeFile(dir: string, name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

/** A file an attacker wants written or chmod'ed through a planted symlink, and a check that it was not. */
export function victim(dir: string, mode = 0o600): { path: string; untouched(): void } {
  const path = writeFile(dir, 'victim', 'precious: not an id, not a key\n');
  chmodSync(path, mode);
  return {
    path,
    untouched() {
      assert.equal(
        readFileSync(path, 'utf8'),
        'precious: not an id, not a key\n',
        `${path} was written through a symlink`,
      );
      assert.equal(statSync(path).mode & 0o7777, mode, `${path} had its mode changed through a symlink`);
    },
  };
}

/**
 * Whether this Node can be started as `uid`: a runtime under a folder only root may enter (CI's cached LTS in
 * root's home) cannot, and a test that runs a command as another user is then skipped with that reason.
 */
export function runtimeRunsAs(uid: number): boolean {
  return (
    process.getuid?.() === 0 &&
    spawnSync(process.execPath, ['-e', ''], { uid, stdio: 'ignore', timeout: 30_000 }).status === 0
  );
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * How much longer than its nominal bound a test waits for an event before it fails: the wait ends as soon as
 * the event comes, so a generous bound costs nothing when all is well, and a busy 2-core machine (other tests,
 * other builds) may be many times slower than an idle one. RPORT_TEST_PATIENCE overrides it.
 */
export const PATIENCE = Number(process.env.RPORT_TEST_PATIENCE) > 0 ? Number(process.env.RPORT_TEST_PATIENCE) : 4;

/**
 * How many times slower than idle this machine runs now, as measured: runnable tasks per core over the last
 * minute (the load average), 1 when there are no more than cores. Read when a bound is needed, so a wait or a
 * duration that ends under load is judged by the load it ran in.
 */
export function loadFactor(): number {
  return Math.max(1, loadavg()[0]! / availableParallelism());
}

/** A failure bound for waiting on an event: PATIENCE times the nominal bound, times the measured load. */
export function patient(ms: number): number {
  return Math.round(ms * PATIENCE * loadFactor());
}

/**
 * The upper bound for a duration a program promises (`nominal`: its timers) plus what its work around them
 * may take (`slack`), the slack scaled by the measured load: a starved process fires its timers late and
 * does its work slowly, but a bound that does not hold (a timer never armed, a default in place of the
 * configured value) still fails, by its nominal part.
 */
export function promised(nominal: number, slack: number): number {
  return Math.round(nominal + slack * loadFactor());
}

/**
 * When a log line was written, by the timestamp our logger puts first (ms since the epoch): a duration
 * measured between two lines is the process's own, free of the time the test took to start it or see them.
 */
export function loggedAt(line: string): number {
  const m = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d\.\d{3}) /.exec(line);
  if (!m) throw new Error(`not a log line with a timestamp: ${line}`);
  return new Date(`${m[1]}T${m[2]}`).getTime();
}

/** Log lines as they come, and a way to wait for one: a process's output, or an in-process logger's. */
export class Lines {
  readonly lines: string[] = [];
  private readonly waiters: Array<{
    re: RegExp;
    resolve: (m: RegExpMatchArray) => void;
    reject: (err: Error) => void;
  }> = [];
  /** Why no more lines will come (the process exited), once that is so. */
  private ended: string | undefined;

  constructor(private readonly echoAs: string) {}

  get output(): string {
    return this.lines.join('\n');
  }

  push(line: string): void {
    this.lines.push(line);
    if (process.env.RPORT_TEST_ECHO) process.stderr.write(`[${this.echoAs}] ${line}\n`);
    for (const w of [...this.waiters]) {
      const m = line.match(w.re);
      if (m) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  }

  /** No more lines will come: every wait still open fails now rather than at its bound. */
  protected end(why: string): void {
    this.ended = why;
    for (const w of this.waiters.splice(0)) w.reject(this.missing(w.re, why));
  }

  private missing(re: RegExp, why: string): Error {
    return new Error(`no line matching ${re} ${why}; output so far:\n${this.lines.slice(-30).join('\n')}`);
  }

  /**
   * The first line matching `re` at or after line index `from` (default: any line so far). Fails when no
   * such line came within patient(ms), or at once when the process has exited without it.
   */
  waitFor(re: RegExp, ms = 10_000, from = 0): Promise<RegExpMatchArray> {
    for (let i = from; i < this.lines.length; i++) {
      const m = this.lines[i]!.match(re);
      if (m) return Promise.resolve(m);
    }
    if (this.ended) return Promise.reject(this.missing(re, this.ended));
    const bound = patient(ms);
    return new Promise((resolve, reject) => {
      const w = {
        re,
        resolve: (m: RegExpMatchArray) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (err: Error) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(this.missing(re, `within ${bound}ms`));
      }, bound);
      this.waiters.push(w);
    });
  }

  /** A mark for waitFor(re, ms, mark): only lines after this point count. */
  mark(): number {
    return this.lines.length;
  }
}

/** A running command of ours, with its output as lines and a way to wait for one. */
export class Proc extends Lines {
  readonly exited: Promise<Exit>;
  exit: Exit | undefined;

  constructor(readonly child: ChildProcess) {
    super(String(child.pid));
    live.add(child);
    let partial = '';
    const onData = (chunk: Buffer) => {
      partial += chunk.toString('utf8');
      const parts = partial.split('\n');
      partial = parts.pop()!;
      for (const line of parts) this.push(line);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        live.delete(child);
        if (partial) this.push(partial);
        this.exit = { code, signal };
        this.end(`before the process exited (${signal ?? `code ${code}`})`);
        resolve(this.exit);
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (!this.exit) this.child.kill(signal);
  }

  async stop(): Promise<Exit> {
    this.kill('SIGTERM');
    const timer = setTimeout(() => this.kill('SIGKILL'), 3000);
    const e = await this.exited;
    clearTimeout(timer);
    return e;
  }
}

export interface RunOptions {
  /** Run as this user id (root only): to test what a non-root service sees. */
  uid?: number;
}

export function run(
  command: 'rport' | 'rportd' | 'rport-watchdog',
  args: string[],
  env: NodeJS.ProcessEnv = {},
  o: RunOptions = {},
): Proc {
  const child = spawn(process.execPath, [join(CLI_DIR, `${command}.js`), ...args], {
    env: { ...process.env, NOTIFY_SOCKET: '', WATCHDOG_USEC: '', WATCHDOG_PID: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(o.uid !== undefined ? { uid: o.uid, gid: o.uid } : {}),
  });
  return new Proc(child);
}

/** The environment that makes an rport hang at its connection request: harness/hang-request.ts preloaded. */
export const HANG_REQUEST = { NODE_OPTIONS: `--import=${new URL('./hang-request.js', import.meta.url).href}` };

/** Any program, with the same line capture. */
export function runProgram(t: TestContext, file: string, args: string[]): Proc {
  const proc = new Proc(spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  cleanup(t, () => proc.stop());
  return proc;
}

/** A real AF_UNIX datagram socket as systemd's NOTIFY_SOCKET (a path, or @name): what it received, one message a line. */
export async function notifyReceiver(t: TestContext, address: string): Promise<Proc & { messages(): string[] }> {
  const rx = runProgram(t, 'python3', [
    fileURLToPath(new URL('../../harness/notify_receiver.py', import.meta.url)),
    address,
  ]);
  await rx.waitFor(/"listening"/);
  return Object.assign(rx, { messages: () => rx.lines.slice(1).map((l) => JSON.parse(l) as string) });
}

/** A running server: `proc` is its process (Proc), or its log lines when it runs in the test's process. */
export interface ServerHandle<P extends Stoppable = Proc> {
  proc: P;
  port: number;
  apiPort: number;
  dataDir: string;
  fingerprint: string;
  api(path: string, auth?: string, method?: string): Promise<{ status: number; body: any }>;
  args: string[];
}

/** What a process and an in-process server or client both offer. */
export type Stoppable = Lines & { stop(): Promise<Exit> };
/** A server started either way (startServer, startServerInProcess). */
export type AnyServer = ServerHandle<Stoppable>;

export const CLIENT_AUTH = 'client1:s3cret';
export const API_AUTH = 'admin:apipass';

/** Starts rportd on free loopback ports and waits until it listens. */
export async function startServer(
  t: TestContext,
  extra: string[] = [],
  fixed?: { port: number; apiPort: number; dataDir: string },
): Promise<ServerHandle> {
  const { port, apiPort, dataDir, args } = await serverArgs(t, extra, fixed);
  const proc = run('rportd', args);
  cleanup(t, () => proc.stop());
  const m = await proc.waitFor(/host key fingerprint (SHA256:\S+)/);
  await proc.waitFor(/listening for clients/);
  return {
    proc,
    port,
    apiPort,
    dataDir,
    fingerprint: m[1]!,
    args,
    api: apiCaller(apiPort),
  };
}

/** The flags startServer gives rportd: loopback ports, the test credentials, debug logs. */
export async function serverArgs(
  t: TestContext,
  extra: string[],
  fixed?: { port: number; apiPort: number; dataDir: string },
): Promise<{ port: number; apiPort: number; dataDir: string; args: string[] }> {
  const port = fixed?.port ?? (await freePort());
  const apiPort = fixed?.apiPort ?? (await freePort());
  const dataDir = fixed?.dataDir ?? tmpDir(t, 'rportd-');
  const args = [
    '--address',
    `127.0.0.1:${port}`,
    '--api-address',
    `127.0.0.1:${apiPort}`,
    '--api-auth',
    API_AUTH,
    '--auth',
    CLIENT_AUTH,
    '--data-dir',
    dataDir,
    '--log-level',
    'debug',
    ...extra,
  ];
  return { port, apiPort, dataDir, args };
}

/**
 * One API call on 127.0.0.1, for tests and the bench: basic auth (none when auth is ''), a JSON body when
 * one is given; the answer parsed as JSON.
 */
export async function apiRequest(
  apiPort: number,
  method: string,
  path: string,
  o: { body?: unknown; auth?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: any }> {
  const auth = o.auth ?? API_AUTH;
  const res = await fetch(`http://127.0.0.1:${apiPort}${path}`, {
    method,
    headers: {
      ...(auth ? { authorization: `Basic ${Buffer.from(auth).toString('base64')}` } : {}),
      ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...o.headers,
    },
    body: o.body !== undefined ? JSON.stringify(o.body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** apiRequest bound to one server's API port. */
export function apiCaller(apiPort: number): ServerHandle['api'] {
  return (path, auth = API_AUTH, method = 'GET') => apiRequest(apiPort, method, path, { auth });
}

/** One counter of rportd's /metrics (0 when it has no sample yet), e.g. `rport_handshake_failures_total{reason="auth"}`. */
export async function metric(server: AnyServer, name: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${server.apiPort}/metrics`, {
    headers: { authorization: `Basic ${Buffer.from(API_AUTH).toString('base64')}` },
  });
  if (!res.ok) throw new Error(`GET /metrics answered ${res.status}: ${await res.text()}`);
  const m = new RegExp(`^${name.replace(/[{}"]/g, '\\$&')} (\\d+)$`, 'm').exec(await res.text());
  return m ? Number(m[1]) : 0;
}

/** Starts rport against a server port with short, test-friendly timings unless overridden. */
export function startClient(
  t: TestContext,
  server: string,
  extra: string[] = [],
  env: NodeJS.ProcessEnv = {},
  o: RunOptions = {},
): Proc {
  const proc = run('rport', clientArgs(t, server, extra), env, o);
  cleanup(t, () => proc.stop());
  return proc;
}

/** The flags startClient gives rport: the test credentials, short timings, debug logs, its own data_dir. */
export function clientArgs(t: TestContext, server: string, extra: string[]): string[] {
  return [
    '--server',
    server,
    '--auth',
    CLIENT_AUTH,
    '--log-level',
    'debug',
    '--keep-alive',
    '1s',
    '--keep-alive-timeout',
    '1s',
    '--max-retry-interval',
    '2s',
    '--connect-timeout',
    '3s',
    '--data-dir',
    tmpDir(t, 'rport-data-'),
    ...extra,
  ];
}

/** Waits until `check` returns a value that is not undefined, polling; fails after patient(ms). */
export async function eventually<T>(
  check: () => Promise<T | undefined> | T | undefined,
  ms = 10_000,
  what = 'condition',
): Promise<T> {
  ms = patient(ms);
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`${what} not reached within ${ms}ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Resolves once `port` on loopback accepts a TCP connection: a log line saying "listening" may come first. */
export async function accepting(port: number, proc: Proc, ms = 10_000): Promise<void> {
  const end = Date.now() + patient(ms);
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (proc.exit || Date.now() > end)
      throw new Error(`nothing accepted connections on 127.0.0.1:${port}:\n${proc.output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A port that accepts TCP connections and never answers: a server that hangs. Also a way to hold a port
 * for a server started later in the test (close, then start on the same port).
 */
export async function blackHole(t: TestContext, port = 0): Promise<{ port: number; close(): Promise<void> }> {
  const held: Socket[] = [];
  const srv = createServer((s) => held.push(s));
  await new Promise<void>((r) => srv.listen(port, '127.0.0.1', r));
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= new Promise<void>((r) => {
      for (const s of held) s.destroy();
      srv.close(() => r());
    }));
  cleanup(t, close);
  return { port: (srv.address() as { port: number }).port, close };
}

/** A TCP echo server on 127.0.0.1: the target of tunnels in tests. */
export async function echoServer(t: TestContext): Promise<number> {
  const srv = createServer((s) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  cleanup(t, () => new Promise((r) => srv.close(() => r(undefined))));
  return (srv.address() as { port: number }).port;
}

/** A target server; `onConn` decides what each connection gets. */
export async function target(t: TestContext, onConn: (s: Socket) => void): Promise<number> {
  const open = new Set<Socket>();
  const srv = createServer({ allowHalfOpen: true }, (s) => {
    open.add(s);
    s.on('close', () => open.delete(s));
    s.on('error', () => undefined);
    onConn(s);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  cleanup(
    t,
    () =>
      new Promise((r) => {
        for (const s of open) s.destroy();
        srv.close(r);
      }),
  );
  return (srv.address() as AddressInfo).port;
}
