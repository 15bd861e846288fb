// rport-watchdog: `rport watchdog ...`, or rport called by that name (the link the packages install).
import { existsSync } from 'node:fs';
import { parseArgs } from '../config/args.js';
import { DEFAULT_CLIENT_CONF } from '../config/client-config.js';
import { describeKeys, loadConfig, ConfigError } from '../config/loader.js';
import { Logger, LogSink } from '../log.js';
import { applySteps, installSteps, uninstallSteps } from '../supervisor/install.js';
import { besideState, readStateFile, resolveTarget, WATCHDOG_OPTIONS } from '../supervisor/options.js';
import { Supervisor } from '../supervisor/supervisor.js';
import { EXIT_CODE, judge, type Verdict } from '../supervisor/verdict.js';
import { VERSION } from '../version.js';
import { onShutdown, openLogger } from './main.js';

const USAGE = `rport-watchdog ${VERSION}: restarts an rport client that hangs, where systemd's watchdog is not available
(Windows scheduled task, cron, Docker HEALTHCHECK, monitoring agents). Reads the client's state.json.
The same as \`rport watchdog\`: the release's rport executable is both (rport-watchdog links to it).

Usage:
  rport-watchdog check   -c rport.conf | --state FILE  [--json] [--threshold 10m] [--grace 10s]
  rport-watchdog run     -c rport.conf | --state FILE  [--interval 60s] [--once] [--restart-cmd CMD] [--max-restarts 3]
  rport-watchdog install -c rport.conf [--print]       (Windows: scheduled task; elsewhere: a cron file)
  rport-watchdog uninstall [--print]

Options:
${describeKeys(WATCHDOG_OPTIONS)}

check exits 0 healthy, 1 hung, 3 unknown (no, unreadable or corrupt state.json, or watchdog_integration off).
Hung: past the file's next_update_by plus --grace; for files without it (RPort's), older than the budget
from rport.conf (keep_alive, max_retry_interval); or older than --threshold when given.
-c defaults to ${DEFAULT_CLIENT_CONF} when that file exists (where the package installs it).
run restarts after two hung checks in a row, never a service stopped on purpose, at most --max-restarts an hour.
Exit codes otherwise: 0 success, 1 failure, 2 bad usage.
`;

function printVerdict(v: Verdict, json: boolean, statePath: string): void {
  if (json)
    process.stdout.write(
      JSON.stringify({
        status: v.status,
        reason: v.reason,
        state_file: statePath,
        age_sec: v.ageSec ?? null,
        state: v.state ?? null,
        pid: v.pid ?? null,
      }) + '\n',
    );
  else process.stdout.write(`${v.status}: ${v.reason}\n`);
}

export async function watchdogMain(argv: string[]): Promise<number> {
  const args = parseArgs(argv, WATCHDOG_OPTIONS);
  if (args.version) return (process.stdout.write(`rport-watchdog ${VERSION}\n`), 0);
  const command = args.positional[0];
  if (args.help || !command) {
    process.stdout.write(USAGE);
    return args.help ? 0 : 2;
  }
  const opts = loadConfig(WATCHDOG_OPTIONS, undefined, args.flags);
  // The packaged client's config, so `rport-watchdog check` works as installed; --state alone still wins.
  const config =
    args.config ??
    (opts.get<string>('watchdog', 'state') || !existsSync(DEFAULT_CLIENT_CONF) ? undefined : DEFAULT_CLIENT_CONF);
  const ms = (k: string) => opts.get<number>('watchdog', k);

  if (command === 'install' || command === 'uninstall') {
    const cronFile = opts.get<string>('watchdog', 'cron_file');
    if (command === 'install' && !config)
      throw new ConfigError('install needs -c /path/to/rport.conf, so the scheduled check knows which client to watch');
    const steps = command === 'install' ? installSteps(['-c', config!], cronFile) : uninstallSteps(cronFile);
    const { ok, lines } = await applySteps(steps, opts.get<boolean>('watchdog', 'print'));
    process.stdout.write(lines.join('\n') + '\n');
    return ok ? 0 : 1;
  }
  if (command !== 'check' && command !== 'run')
    throw new ConfigError(`unknown command "${command}": use check, run, install or uninstall (see --help)`);

  const target = resolveTarget(config, opts);
  const threshold = ms('threshold') > 0 ? Math.round(ms('threshold') / 1000) : undefined;
  const graceSec = Math.round(ms('grace') / 1000);

  if (command === 'check') {
    const v: Verdict = target.disabled
      ? { status: 'unknown', reason: target.disabled }
      : judge({
          file: readStateFile(target.statePath),
          nowSec: Math.floor(Date.now() / 1000),
          thresholdSec: threshold,
          budgetSec: target.budgetSec,
          graceSec,
        });
    printVerdict(v, opts.get<boolean>('watchdog', 'json'), target.statePath);
    return EXIT_CODE[v.status];
  }

  const logFile = opts.get<string>('watchdog', 'log_file') || besideState(target, 'rport-watchdog.log');
  let log: Logger;
  try {
    log = openLogger(logFile, 'info', 'rport-watchdog', `--log-file ${logFile}`);
  } catch (err) {
    // Decisions must be logged somewhere: fall back to stderr and say why.
    log = new Logger(LogSink.stderr(), 'info', 'rport-watchdog');
    log.warn(`${(err as Error).message}; logging to stderr`);
  }
  const supervisor = new Supervisor({
    target,
    intervalMs: ms('interval'),
    graceSec,
    thresholdSec: threshold,
    restartCmd: opts.get<string>('watchdog', 'restart_cmd'),
    runningCmd: opts.get<string>('watchdog', 'running_cmd'),
    service: opts.get<string>('watchdog', 'service'),
    maxRestartsPerHour: opts.get<number>('watchdog', 'max_restarts'),
    commandTimeoutMs: ms('command_timeout'),
    memoryFile: opts.get<string>('watchdog', 'memory_file') || besideState(target, 'rport-watchdog.json'),
    log,
  });
  if (opts.get<boolean>('watchdog', 'once')) {
    const v = await supervisor.checkOnce();
    return EXIT_CODE[v.status];
  }
  const stop = new AbortController();
  onShutdown(() => stop.abort());
  await supervisor.runForever(stop.signal);
  return 0;
}
