import { parseArgs } from '../config/args.js';
import { type Config, ConfigError, describeKeys, loadConfig, type KeyDef } from '../config/loader.js';
import type { DocumentedNames } from '../config/rport-names.js';
import { errorMessage, LEVELS, LogSink, Logger, type Level } from '../log.js';
import { deadline } from '../timeout.js';
import { VERSION } from '../version.js';

/** The log_file logger once open, so that a failure at start reaches the file as well as stderr. */
let failureLog: Logger | undefined;

/** log_file for one line about a failure before its logger was opened; undefined if it cannot be opened. */
function fileLogger(file: string, component: string): Logger | undefined {
  try {
    return new Logger(LogSink.file(file), 'error', component);
  } catch {
    return undefined;
  }
}

/** A logger for a command, writing to log_file when set; an unopenable file is a config error. */
export function openLogger(logFile: string, level: Level, component: string, where: string): Logger {
  let sink = LogSink.stderr();
  if (logFile) {
    try {
      sink = LogSink.file(logFile);
    } catch (err) {
      throw new ConfigError(
        `${where} cannot be opened for writing: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`,
      );
    }
  }
  return new Logger(sink, level, component);
}

/**
 * Runs a command's main and exits with its code: config and usage errors exit 2 with their one line,
 * anything unexpected exits 1 with its message (never a stack trace).
 */
export function runMain(command: string, main: () => Promise<number>): void {
  main().then(
    (code) => process.exit(code),
    (err) => {
      // Whoever reads only the log file must see why the command did not start.
      const fileLog =
        failureLog ?? (err instanceof ConfigError && err.logFile ? fileLogger(err.logFile, command) : undefined);
      if (err instanceof ConfigError) {
        fileLog?.error(err.message);
        process.stderr.write(`${err.message}\n`);
        process.exit(2);
      }
      fileLog?.error(errorMessage(err));
      process.stderr.write(`${command}: ${errorMessage(err)}\n`);
      if (process.env.RPORT_DEBUG_STACK) process.stderr.write(`${(err as Error).stack}\n`);
      process.exit(1);
    },
  );
}

/** A stop that has not finished by then ends the process anyway: systemd and the tests expect it gone within 2 s. */
const SHUTDOWN_DEADLINE_MS = 1900;

/** Calls `stop` on SIGTERM/SIGINT and makes sure the process is gone within 2 s whatever happens. */
export function onShutdown(stop: () => void): void {
  const handler = () => {
    deadline(SHUTDOWN_DEADLINE_MS, 'stopping', () => process.exit(0), { unref: true });
    stop();
  };
  process.once('SIGTERM', handler);
  process.once('SIGINT', handler);
}

/** rport or rportd: the two commands that run from a config file until stopped. */
export interface ConfiguredCommand {
  name: 'rport' | 'rportd';
  summary: string;
  configFile: string;
  defs: KeyDef[];
  /** The closing lines of --help: signals, exit codes. */
  notes: string;
  /** RPort's documented sections and keys: accepted, and named at start if not implemented. */
  documented: DocumentedNames;
}

/**
 * The start shared by rport and rportd: --help, --version, the config file and flags, the logger. Returns
 * an exit code when there is nothing more to do (help, version).
 */
export function startConfigured<T extends { logFile: string; logLevel: Level }>(
  cmd: ConfiguredCommand,
  build: (c: Config) => T,
): number | { cfg: T; config: Config; root: Logger } {
  const args = parseArgs(process.argv.slice(2), cmd.defs);
  if (args.help) {
    process.stdout.write(`${cmd.name} ${VERSION}: ${cmd.summary}

Usage: ${cmd.name} [-c ${cmd.configFile}] [--key value ...]

  -c, --config FILE     ${cmd.configFile} (TOML, RPort's sections and keys); flags override it
  -h, --help            this text
  -v, --version         the version

Every config key is also a flag:
${describeKeys(cmd.defs)}

${cmd.notes}
`);
    return 0;
  }
  if (args.version) return (process.stdout.write(`${cmd.name} ${VERSION}\n`), 0);
  if (args.positional.length) throw new ConfigError(`unexpected argument "${args.positional[0]}" (see --help)`);
  const config = loadConfig(cmd.defs, args.config, args.flags, cmd.documented);
  // Opened before the rest of the config is checked, so that a bad value is reported in log_file too.
  const logFile = config.get<string>('logging', 'log_file');
  const level = config.get<string>('logging', 'log_level');
  const root = openLogger(
    logFile,
    (LEVELS as readonly string[]).includes(level) ? (level as Level) : 'info',
    cmd.name,
    config.where('logging', 'log_file'),
  );
  if (logFile) failureLog = root;
  const cfg = build(config);
  // One line for an RPort file: what is not implemented, and the one default kept unlike RPort's on purpose
  // (without log_file RPort logs nothing; a process that logs nothing cannot say why it failed).
  const notes = [
    ...(config.ignored.length ? [`ignoring what this version does not implement: ${config.ignored.join(', ')}`] : []),
    ...(logFile
      ? []
      : ['[logging] log_file is not set: logging to stderr, where RPort logs nothing (see docs/migrating.md)']),
  ];
  if (args.config && notes.length) root.info(`${args.config}: ${notes.join('; ')}`);
  return { cfg, config, root };
}
