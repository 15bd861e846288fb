import { closeSync, constants, fchmodSync, fstatSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { stringify } from 'smol-toml';
import { parseArgs } from '../config/args.js';
import { CLIENT_KEYS, clientConfig, DEFAULT_CLIENT_CONF } from '../config/client-config.js';
import { ConfigError, flagName, loadConfig, type KeyDef } from '../config/loader.js';
import { errorMessage } from '../log.js';
import { clientTemplate } from './client-template.js';

export const INIT_USAGE = `Usage: rport init --server HOST:PORT --auth ID:PASSWORD [--fingerprint SHA256:...] [--KEY VALUE ...]
                  [-c FILE] [--force]

Writes a starter rport.conf (default ${DEFAULT_CLIENT_CONF}): the package's commented template with the
flags' values set and watchdog_integration on; any other config key may be given as a flag too (see
rport --help). The file is created with mode 0600
(it holds the password); an existing one is kept unless --force is given, and then keeps its owner and
group (the package's root:rport 0640) without any access for others.
`;

/** The TOML value of a flag as given: durations keep their text ("3m"), lists and tables their items. */
function tomlValue(def: KeyDef, parsed: unknown, raw: string): unknown {
  return def.type === 'duration' ? raw : parsed;
}

/** `key = value` as TOML on one line; a table inline. */
function tomlLine(key: string, value: unknown): string {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    return `${key} = { ${Object.entries(value)
      .map(([k, v]) => `${stringify({ [k]: v }).trim()}`)
      .join(', ')} }`;
  }
  return stringify({ [key]: value }).trim();
}

/**
 * The template with each value set: its `#key = ...` or `key = ...` line in the section replaced, or the
 * line added at the section's end (the section at the file's end when the template has none).
 */
export function fillTemplate(
  template: string,
  values: Array<{ section: string; key: string; value: unknown }>,
): string {
  const lines = template.split('\n');
  for (const { section, key, value } of values) {
    const start = lines.findIndex((l) => l.trim() === `[${section}]`);
    if (start < 0) {
      if (lines.at(-1) === '') lines.pop();
      lines.push('', `[${section}]`, `  ${tomlLine(key, value)}`, '');
      continue;
    }
    let end = lines.findIndex((l, i) => i > start && /^\s*\[/.test(l));
    if (end < 0) end = lines.length;
    const re = new RegExp(`^(\\s*)#?\\s*${key}\\s*=`);
    const at = lines.findIndex((l, i) => i > start && i < end && re.test(l));
    if (at >= 0) lines[at] = `${re.exec(lines[at]!)![1]}${tomlLine(key, value)}`;
    else {
      while (end > start + 1 && lines[end - 1]!.trim() === '') end--;
      lines.splice(end, 0, `  ${tomlLine(key, value)}`);
    }
  }
  return lines.join('\n');
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
  if (args.help) return (process.stdout.write(INIT_USAGE), 0);
  if (args.positional.length)
    throw new ConfigError(`unexpected argument "${args.positional[0]}" (see rport init --help)`);
  const force = args.flags.get('force')?.at(-1) === 'true';
  args.flags.delete('force');
  const file = args.config ?? DEFAULT_CLIENT_CONF;
  const flags = new Map(args.flags);
  if (!flags.has('watchdog-integration')) flags.set('watchdog-integration', ['true']);
  // The same checks as at start: a file this writes is one rport accepts.
  const config = loadConfig(CLIENT_KEYS, undefined, flags);
  clientConfig(config);
  const values = CLIENT_KEYS.flatMap((def) => {
    const raw = flags.get(flagName(def));
    return raw
      ? [{ section: def.section, key: def.key, value: tomlValue(def, config.get(def.section, def.key), raw.at(-1)!) }]
      : [];
  });
  writeConf(file, fillTemplate(clientTemplate(), values), force);
  process.stdout.write(`wrote ${file}\n`);
  return 0;
}
