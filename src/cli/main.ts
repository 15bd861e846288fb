import { Config, ConfigError, describeKeys, flagName, loadConfig, type KeyDef } from '../config/loader.js';
import { errorMessage, LogSink, Logger, type Level } from '../log.js';
import { VERSION } from '../version.js';

export interface ParsedArgs {
  config: string | undefined;
  help: boolean;
  version: boolean;
  flags: Map<string, string[]>;
  positional: string[];
}

/**
 * --name value, --name=value, and bare --name for boolean keys. Flags are kept as text; the config loader
 * converts and checks them against the key's type, so a bad flag reads like a bad config line.
 */
export function parseArgs(argv: string[], defs: KeyDef[], booleans: string[] = []): ParsedArgs {
  const bools = new Set([...defs.filter((d) => d.type === 'bool').map(flagName), ...booleans]);
  const out: ParsedArgs = { config: undefined, help: false, version: false, flags: new Map(), positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-h' || arg === '--help') out.help = true;
    else if (arg === '-v' || arg === '--version') out.version = true;
    else if (arg === '-c' || arg === '--config' || arg.startsWith('--config=')) {
      out.config = arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : argv[++i];
      if (!out.config) throw new ConfigError(`${arg} needs a file name (e.g. -c /etc/rport/rport.conf)`);
    } else if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = arg.slice(2, eq < 0 ? undefined : eq);
      let value: string | undefined = eq < 0 ? undefined : arg.slice(eq + 1);
      if (value === undefined) {
        if (bools.has(name)) value = 'true';
        else if (i + 1 < argv.length) value = argv[++i]!;
        else throw new ConfigError(`--${name} needs a value`);
      }
      out.flags.set(name, [...(out.flags.get(name) ?? []), value]);
    } else if (arg.startsWith('-') && arg !== '-') {
      throw new ConfigError(`unknown option ${arg} (see --help)`);
    } else out.positional.push(arg);
  }
  return out;
}

/** A logger for a command, writing to log_file when set; an unopenable file is a config error. */
export function openLogger(logFile: string, level: Level, component: string, where: string): Logger {
  let sink = LogSink.stderr();
  if (logFile) {
    try {
      sink = LogSink.file(logFile);
    } catch (err) {
      throw new ConfigError(`${where} cannot be opened for writing: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`);
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
      if (err instanceof ConfigError) {
        process.stderr.write(`${err.message}\n`);
        process.exit(2);
      }
      process.stderr.write(`${command}: ${errorMessage(err)}\n`);
      if (process.env.RPORT_DEBUG_STACK) process.stderr.write(`${(err as Error).stack}\n`);
      process.exit(1);
    },
  );
}

/** Calls `stop` on SIGTERM/SIGINT and makes sure the process is gone within 2 s whatever happens. */
export function onShutdown(stop: () => void): void {
  const handler = () => {
    setTimeout(() => process.exit(0), 1900).unref();
    stop();
  };
  process.once('SIGTERM', handler);
  process.once('SIGINT', handler);
}

export interface ServiceCommand {
  name: 'rport' | 'rportd';
  summary: string;
  configFile: string;
  defs: KeyDef[];
  /** The closing lines of --help: signals, exit codes. */
  notes: string;
}

/**
 * The start shared by rport and rportd: --help, --version, the config file and flags, the logger. Returns
 * an exit code when there is nothing more to do (help, version).
 */
export function startService<T extends { logFile: string; logLevel: Level }>(
  cmd: ServiceCommand,
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
  if (args.version) return process.stdout.write(`${cmd.name} ${VERSION}\n`), 0;
  if (args.positional.length) throw new ConfigError(`unexpected argument "${args.positional[0]}" (see --help)`);
  const config = loadConfig(cmd.defs, args.config, args.flags);
  const cfg = build(config);
  const root = openLogger(cfg.logFile, cfg.logLevel, cmd.name, config.where('logging', 'log_file'));
  if (config.ignored.length) root.info(`${args.config}: ignoring what this version does not implement: ${config.ignored.join(', ')}`);
  return { cfg, config, root };
}
