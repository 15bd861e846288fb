import { dirname, join } from 'node:path';
import { CLIENT_KEYS, connectionTimings } from '../config/client-config.js';
import { ConfigError, loadConfig, type Config, type KeyDef } from '../config/loader.js';
import { RPORT_CLIENT_NAMES } from '../config/rport-names.js';
import { readSmallFile, UnsafeFileError } from '../files.js';
import { heartbeatBudget } from '../watchdog/budget.js';
import { STATE_FILE_NAME } from '../watchdog/state-file.js';
import type { VerdictInput } from './verdict.js';

/** rport-watchdog's own options: flags only, checked like config keys. */
export const WATCHDOG_OPTIONS: KeyDef[] = [
  {
    section: 'watchdog',
    key: 'state',
    type: 'string',
    default: '',
    help: 'state.json to check (default: data_dir/state.json of -c rport.conf)',
  },
  {
    section: 'watchdog',
    key: 'threshold',
    type: 'duration',
    default: 0,
    help: 'hung when the last update is older than this, whatever the file promises',
  },
  {
    section: 'watchdog',
    key: 'grace',
    type: 'duration',
    default: 10_000,
    help: 'how far past next_update_by a client may be before it counts as hung',
  },
  { section: 'watchdog', key: 'json', type: 'bool', default: false, help: 'check: print the verdict as JSON' },
  { section: 'watchdog', key: 'interval', type: 'duration', default: 60_000, help: 'run: time between checks' },
  {
    section: 'watchdog',
    key: 'once',
    type: 'bool',
    default: false,
    help: 'run: check once and exit (for a scheduled task or cron); strikes are remembered between runs',
  },
  {
    section: 'watchdog',
    key: 'restart_cmd',
    type: 'string',
    default: '',
    help: 'run: command that restarts the client (default: systemctl restart rport / Restart-Service rport)',
  },
  {
    section: 'watchdog',
    key: 'running_cmd',
    type: 'string',
    default: '',
    help: 'run: command that exits 0 while the client service is meant to run (default: systemctl is-active / Get-Service; with --restart-cmd: the pid in state.json is alive)',
  },
  {
    section: 'watchdog',
    key: 'command_timeout',
    type: 'duration',
    default: 60_000,
    help: 'run: a restart or running command that takes longer is killed',
  },
  {
    section: 'watchdog',
    key: 'service',
    type: 'string',
    default: 'rport',
    help: 'run: the service name for the default commands',
  },
  { section: 'watchdog', key: 'max_restarts', type: 'int', default: 3, help: 'run: restarts allowed in any hour' },
  {
    section: 'watchdog',
    key: 'log_file',
    type: 'string',
    default: '',
    help: 'run: where decisions are logged (default: rport-watchdog.log beside state.json)',
  },
  {
    section: 'watchdog',
    key: 'memory_file',
    type: 'string',
    default: '',
    help: 'run: where strikes and restarts are remembered (default: rport-watchdog.json beside state.json)',
  },
  {
    section: 'watchdog',
    key: 'cron_file',
    type: 'string',
    default: '/etc/cron.d/rport-watchdog',
    help: 'install: the cron file to write on Linux',
  },
  {
    section: 'watchdog',
    key: 'print',
    type: 'bool',
    default: false,
    help: 'install/uninstall: print what would be done instead of doing it',
  },
];

export interface Target {
  statePath: string;
  /** From rport.conf: the heartbeat budget in seconds, for files without next_update_by. */
  budgetSec: number | undefined;
  /** Why checking makes no sense (watchdog_integration off), if so. */
  disabled: string | undefined;
  configPath: string | undefined;
}

/** Where state.json is and what rport.conf says about it. */
export function resolveTarget(configPath: string | undefined, opts: Config): Target {
  const explicit = opts.get<string>('watchdog', 'state');
  if (!configPath && !explicit)
    throw new ConfigError('say which client to watch: -c /etc/rport/rport.conf or --state /var/lib/rport/state.json');
  if (!configPath) return { statePath: explicit, budgetSec: undefined, disabled: undefined, configPath };
  const c = loadConfig(CLIENT_KEYS, configPath, new Map(), RPORT_CLIENT_NAMES);
  const timings = connectionTimings(c);
  const budget = heartbeatBudget(timings);
  return {
    statePath: explicit || join(c.get<string>('client', 'data_dir'), STATE_FILE_NAME),
    budgetSec: Math.ceil(budget.maxMs / 1000),
    disabled: timings.watchdogIntegration
      ? undefined
      : `watchdog_integration is off in ${configPath}: the client writes no state.json (set [connection] watchdog_integration = true)`,
    configPath,
  };
}

/** The client writes about 300 bytes; anything much larger is not its state.json. */
export const MAX_STATE_BYTES = 64 * 1024;

/** Reads state.json as readSmallFile does: a FIFO, a device or a huge file there is "unreadable". */
export function readStateFile(path: string): VerdictInput['file'] {
  try {
    return { text: readSmallFile(path, MAX_STATE_BYTES) };
  } catch (err) {
    if (err instanceof UnsafeFileError) return { unreadable: err.message };
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? { missing: true } : { unreadable: code ?? String(err) };
  }
}

export function besideState(target: Target, name: string): string {
  return join(dirname(target.statePath), name);
}
