import { closeSync, constants, fchmodSync, fstatSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { stringify } from 'smol-toml';
import { CLIENT_KEYS, clientConfig } from '../config/client-config.js';
import { ConfigError, flagName, loadConfig, type KeyDef } from '../config/loader.js';
import { errorMessage } from '../log.js';
import { parseArgs } from './main.js';

/** Where the packages and the Windows service look for the config. */
export const DEFAULT_CLIENT_CONF = process.platform === 'win32' ? 'C:\\Program Files\\rport\\rport.conf' : '/etc/rport/rport.conf';

export const INIT_USAGE = `Usage: rport init --server HOST:PORT --auth ID:PASSWORD [--fingerprint SHA256:...] [--KEY VALUE ...]
                  [-c FILE] [--force]

Writes a starter rport.conf (default ${DEFAULT_CLIENT_CONF}) from flags, with watchdog_integration on;
any other config key may be given as a flag too (see rport --help). The file is created with mode 0600
(it holds the password); an existing one is kept unless --force is given, and then keeps its owner and
group (the package's root:rport 0640) without any access for others.
`;

/** The TOML value of a flag as given: durations keep their text ("3m"), lists and tables their items. */
function tomlValue(def: KeyDef, parsed: unknown, raw: string): unknown {
  return def.type === 'duration' ? raw : parsed;
}

/** Writes the file; with O_EXCL unless forced, so an existing config is never replaced by accident. */
function writeConf(file: string, text: string, force: boolean): void {
  mkdirSync(dirname(file), { recursive: true });
  const flags = constants.O_WRONLY | constants.O_CREAT | (force ? constants.O_TRUNC : constants.O_EXCL);
  let fd: number;
  try {
    fd = openSync(file, flags, 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new ConfigError(`${file} exists: not overwriting it (add --force to replace it)`);
    throw new ConfigError(`${file} cannot be written: ${code ?? errorMessage(err)}`);
  }
  try {
    // A replaced file keeps its owner and group (the package's root:rport 0640, so the service can read
    // it) but never stays readable by others: it holds the password.
    const mode = fstatSync(fd).mode & 0o777;
    if (process.platform !== 'win32' && mode & 0o007) fchmodSync(fd, mode & 0o770);
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

/** `rport init` (also `rport --init`): exit 0 written, 2 bad flags or an existing file without --force. */
export function initCommand(argv: string[]): number {
  const args = parseArgs(argv, CLIENT_KEYS, ['force']);
  if (args.help) return process.stdout.write(INIT_USAGE), 0;
  if (args.positional.length) throw new ConfigError(`unexpected argument "${args.positional[0]}" (see rport init --help)`);
  const force = args.flags.get('force')?.at(-1) === 'true';
  args.flags.delete('force');
  const file = args.config ?? DEFAULT_CLIENT_CONF;
  const flags = new Map(args.flags);
  if (!flags.has('watchdog-integration')) flags.set('watchdog-integration', ['true']);
  // The same checks as at start: a file this writes is one rport accepts.
  const config = loadConfig(CLIENT_KEYS, undefined, flags);
  clientConfig(config);
  const doc: Record<string, Record<string, unknown>> = {};
  for (const def of CLIENT_KEYS) {
    const raw = flags.get(flagName(def));
    if (raw) (doc[def.section] ??= {})[def.key] = tomlValue(def, config.get(def.section, def.key), raw.at(-1)!);
  }
  const text = `# rport.conf written by rport init; every key: rport --help, or RPort's example rport.conf.\n${stringify(doc)}\n`;
  writeConf(file, text, force);
  process.stdout.write(`wrote ${file}\n`);
  return 0;
}
