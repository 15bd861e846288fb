// rportd and rport in the test's own process, as bench/fleet.ts runs clients: the same classes the commands
// wire, without a process start each (loading SQLite, fastify and ssh2 takes a second or more on a busy
// machine). For tests that involve no signal, exit code, pid or systemd; those start the commands (procs.ts).
import { mkdirSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { parseArgs } from '../../src/config/args.js';
import { RportClient } from '../../src/client/client.js';
import { StepClock } from '../../src/watchdog/step-clock.js';
import { Daemon } from '../../src/daemon/daemon.js';
import { CLIENT_KEYS, clientConfig } from '../../src/config/client-config.js';
import { loadConfig } from '../../src/config/loader.js';
import { SERVER_KEYS, serverConfig } from '../../src/config/server-config.js';
import { Logger, LogSink } from '../../src/log.js';
import { Credentials } from '../../src/server/credentials.js';
import { loadHostKey } from '../../src/transport/host-key.js';
import { StateFile } from '../../src/watchdog/state-file.js';
import { Watchdog } from '../../src/watchdog/watchdog.js';
import {
  apiCaller,
  cleanup,
  clientArgs,
  Lines,
  serverArgs,
  type Exit,
  type ServerHandle,
} from '../../harness/procs.js';

/** An in-process server's or client's log lines, and stop() as a process handle has it. */
export class InProcess extends Lines {
  exit: Exit | undefined;
  constructor(
    name: string,
    readonly exited: Promise<Exit>,
    private readonly stopper: () => void,
  ) {
    super(name);
    void exited.then((e) => (this.exit = e));
  }

  /** Stops it as SIGTERM would: the same stop() the command calls. */
  async stop(): Promise<Exit> {
    if (!this.exit) this.stopper();
    return this.exited;
  }
}

function logger(lines: Lines, level: string, component: string): Logger {
  return new Logger(
    LogSink.lines((l) => lines.push(l)),
    level as 'debug',
    component,
  );
}

/** rportd with startServer's flags, in this process; the same handle, its log lines as `proc`. */
export async function startServerInProcess(
  t: TestContext,
  extra: string[] = [],
  fixed?: { port: number; apiPort: number; dataDir: string },
): Promise<ServerHandle<InProcess>> {
  const { port, apiPort, dataDir, args } = await serverArgs(t, extra, fixed);
  const cfg = serverConfig(loadConfig(SERVER_KEYS, undefined, parseArgs(args, SERVER_KEYS).flags));
  mkdirSync(cfg.dataDir, { recursive: true, mode: 0o700 });
  const hostKey = loadHostKey(cfg.dataDir, cfg.keySeed);
  let stopped!: (e: Exit) => void;
  let stop = () => {};
  const proc = new InProcess('rportd', new Promise<Exit>((r) => (stopped = r)), () => stop());
  const root = logger(proc, cfg.logLevel, 'rportd');
  const daemon = new Daemon(cfg, hostKey, Credentials.load(cfg.auth, cfg.authFile), root);
  await daemon.start();
  await daemon.startApi(root.child('api'));
  stop = () => void daemon.stop().then(() => stopped({ code: 0, signal: null }));
  cleanup(t, () => proc.stop());
  return { proc, port, apiPort, dataDir, fingerprint: hostKey.fingerprint, args, api: apiCaller(apiPort) };
}

/** rport with startClient's flags, in this process: the connection loop and its watchdog, as the command wires them. */
export function startClientInProcess(t: TestContext, server: string, extra: string[] = []): InProcess {
  const cfg = clientConfig(
    loadConfig(CLIENT_KEYS, undefined, parseArgs(clientArgs(t, server, extra), CLIENT_KEYS).flags),
  );
  let finished!: (e: Exit) => void;
  let stop = () => {};
  const proc = new InProcess('rport', new Promise<Exit>((r) => (finished = r)), () => stop());
  const root = logger(proc, cfg.logLevel, 'rport');
  const clock = new StepClock();
  const watchdog = new Watchdog(
    cfg,
    {
      stateFile: cfg.watchdogIntegration ? new StateFile(cfg.dataDir, root.child('watchdog')) : undefined,
      notify: undefined,
      watchdogUsec: undefined,
    },
    clock,
    root.child('watchdog'),
  );
  const client = new RportClient(cfg, root.child('client'), watchdog, clock);
  stop = () => {
    watchdog.stop();
    client.stop();
  };
  watchdog.start();
  void client.run().then((code) => {
    watchdog.stop();
    finished({ code, signal: null });
  });
  cleanup(t, () => proc.stop());
  return proc;
}
