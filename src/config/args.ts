import { ConfigError, flagName, type KeyDef } from './loader.js';

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
