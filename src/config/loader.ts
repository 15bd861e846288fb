/* eslint-disable max-lines -- the one loader for files and flags: the converters, Config and the error lines share the key tables' types */
import { readFileSync } from 'node:fs';
import { parse as parseToml, TomlError } from 'smol-toml';
import { formatDuration, parseDuration } from '../shared/duration.js';
import { nearest, type DocumentedNames } from './rport-names.js';
import { MAX_TIMER_MS } from '../timeout.js';

export type ValueType = 'string' | 'duration' | 'seconds' | 'int' | 'bool' | 'strings' | 'table';
export type Value = string | number | boolean | string[] | Record<string, string>;

/** One key of a config file, also settable as a command-line flag. */
export interface KeyDef {
  section: string;
  key: string;
  type: ValueType;
  default: Value;
  help: string;
  /** Flag name without the dashes; defaults to the key with '_' as '-'. */
  flag?: string;
  /** Holds a password: its value is never repeated in an error line (which may reach a log). */
  secret?: boolean;
}

/** A bad config file, flag or value; the message is the whole line the user sees. */
export class ConfigError extends Error {
  /** [logging] log_file as far as it could be read before the error: the line goes there too. */
  logFile: string | undefined;
}

export function flagName(def: KeyDef): string {
  return def.flag ?? def.key.replace(/_/g, '-');
}

const EXPECTED: Record<ValueType, string> = {
  string: 'is not a string (put it in quotes)',
  duration: "is not a duration (use e.g. '3m')",
  seconds: "is not a duration (use e.g. '1h' or a number of seconds)",
  int: 'is not a whole number (use e.g. 5)',
  bool: 'is not true or false',
  strings: 'is not a list of strings (use e.g. ["a", "b"])',
  table: `is not a list of "Name: value" strings or a table of strings (use e.g. ['User-Agent: probe'])`,
};

function show(raw: unknown): string {
  if (raw instanceof Date) return raw.toISOString();
  try {
    return JSON.stringify(raw) ?? String(raw);
  } catch {
    return String(raw);
  }
}

function showValue(def: KeyDef, raw: unknown): string {
  return def.secret ? '"(secret, not shown)"' : show(raw);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** Converts a TOML value (or a flag's text, fromFlag=true) to the key's type; undefined when it does not fit. */
function convert(type: ValueType, raw: unknown, fromFlag: boolean): Value | undefined {
  switch (type) {
    case 'string':
      return typeof raw === 'string' ? raw : undefined;
    case 'duration':
    case 'seconds': {
      if (typeof raw === 'number' && Number.isInteger(raw)) {
        if (raw === 0) return 0;
        return type === 'seconds' ? raw * 1000 : undefined;
      }
      if (typeof raw !== 'string') return undefined;
      if (type === 'seconds' && /^\d+$/.test(raw.trim())) return Number(raw) * 1000;
      const ms = parseDuration(raw);
      return ms !== undefined && ms >= 0 ? ms : undefined;
    }
    case 'int': {
      if (typeof raw === 'number') return Number.isInteger(raw) ? raw : undefined;
      if (fromFlag && typeof raw === 'string' && /^-?\d+$/.test(raw.trim())) return Number(raw);
      return undefined;
    }
    case 'bool':
      if (typeof raw === 'boolean') return raw;
      if (fromFlag && (raw === 'true' || raw === 'false')) return raw === 'true';
      return undefined;
    case 'strings':
      if (fromFlag && typeof raw === 'string')
        return raw
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean);
      return Array.isArray(raw) && raw.every((s) => typeof s === 'string') ? (raw as string[]) : undefined;
    case 'table': {
      // RPort's form is a list of "Name: value" strings; a TOML table and a flag "Name: value" work too.
      const pair = (text: unknown) => {
        const m = typeof text === 'string' ? /^([^:=]+)[:=]\s*(.*)$/.exec(text) : null;
        return m && m[1]!.trim() ? ([m[1]!.trim(), m[2]!.trim()] as const) : undefined;
      };
      if (fromFlag && typeof raw === 'string') {
        const p = pair(raw);
        return p ? { [p[0]]: p[1] } : undefined;
      }
      if (Array.isArray(raw)) {
        const pairs = raw.map(pair);
        return pairs.every((p) => p !== undefined)
          ? Object.fromEntries(pairs as Array<readonly [string, string]>)
          : undefined;
      }
      if (!isPlainObject(raw)) return undefined;
      const out: Record<string, string> = {};
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== 'string') return undefined;
        out[k] = v;
      }
      return out;
    }
  }
}

/** A loaded configuration: every defined key has a value, and each knows where it came from. */
export class Config {
  constructor(
    private readonly values: Map<string, Value>,
    private readonly origins: Map<string, string>,
    /** Sections and keys found in the file that this product does not implement. */
    readonly ignored: string[],
    /** Free-form sections of the file, as TOML gave them. */
    readonly freeForm: ReadonlyMap<string, Record<string, unknown>> = new Map(),
  ) {}

  get<T extends Value>(section: string, key: string): T {
    const v = this.values.get(`${section}.${key}`);
    if (v === undefined) throw new Error(`config key [${section}] ${key} is not defined`);
    return v as T;
  }

  /** A duration that a timer waits for: the client's interval timers cannot wait longer than MAX_TIMER_MS, so it is refused. */
  timer(section: string, key: string): number {
    const ms = this.get<number>(section, key);
    return ms <= MAX_TIMER_MS
      ? ms
      : this.fail(section, key, "is longer than 24 days, more than a timer can wait (use e.g. '24h')");
  }

  /** Where a value came from: "rport.conf: [connection] keep_alive = \"3s\"", "--keep-alive \"3s\"", or "[connection] keep_alive" for a default. */
  where(section: string, key: string): string {
    return this.origins.get(`${section}.${key}`) ?? `[${section}] ${key}`;
  }

  /** Throws a ConfigError: "<where> <problem>". */
  fail(section: string, key: string, problem: string): never {
    throw new ConfigError(`${this.where(section, key)} ${problem}`);
  }
}

function readToml(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code;
    throw new ConfigError(`${file}: cannot read the config file: ${why} (check the path given with -c)`);
  }
  try {
    return parseToml(text) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof TomlError) {
      const first = err.message.split('\n')[0]!.replace(/^Invalid TOML document: /, '');
      throw new ConfigError(`${file}: line ${err.line}: ${first} (the file is not valid TOML)`);
    }
    throw new ConfigError(`${file}: not valid TOML`);
  }
}

/** The names a file may use: the key tables' and RPort's documented set (which may hold names rport lacks). */
class KnownNames {
  private readonly keys = new Map<string, Set<string> | '*'>();

  constructor(defs: KeyDef[], documented: DocumentedNames) {
    for (const [section, names] of Object.entries(documented))
      this.keys.set(section, names === '*' ? '*' : new Set(names));
    for (const d of defs) {
      const set = this.keys.get(d.section);
      if (set === '*') continue;
      if (set) set.add(d.key);
      else this.keys.set(d.section, new Set([d.key]));
    }
  }

  sectionProblem(file: string, section: string, body: unknown): string | undefined {
    if (this.keys.has(section)) return undefined;
    // A key above the first [section] header (or one with a stray dot) is a common slip.
    if (!isPlainObject(body)) {
      const home = [...this.keys].find(([, names]) => names !== '*' && names.has(section));
      if (home) return `${file}: ${section} is outside any section (put it under [${home[0]}])`;
    }
    const near = nearest(section, this.keys.keys());
    return `${file}: [${section}] is not a known section${near ? ` (did you mean [${near}]?)` : ` (known: ${[...this.keys.keys()].map((k) => `[${k}]`).join(', ')})`}`;
  }

  keyProblem(file: string, section: string, key: string): string | undefined {
    const names = this.keys.get(section)!;
    if (names === '*' || names.has(key)) return undefined;
    const near = nearest(key, names);
    return `${file}: [${section}] ${key} is not a known key${near ? ` (did you mean ${near}?)` : ` of [${section}] (see --help for the keys rport reads)`}`;
  }
}

/**
 * Loads defaults, then the file (if any), then flags (which win). A section or key that RPort documents but
 * this product does not implement is collected in `ignored`, so that a user's full RPort config loads; any
 * other name is a mistake and throws, naming the nearest known name.
 */
export function loadConfig(
  defs: KeyDef[],
  file: string | undefined,
  flags: Map<string, string[]>,
  documented: DocumentedNames = {},
): Config {
  let logFile: string | undefined;
  try {
    return load(defs, file, flags, documented, (f) => (logFile = f));
  } catch (err) {
    if (err instanceof ConfigError) err.logFile = logFile;
    throw err;
  }
}

function load(
  defs: KeyDef[],
  file: string | undefined,
  flags: Map<string, string[]>,
  documented: DocumentedNames,
  sawLogFile: (f: string) => void,
): Config {
  const values = new Map<string, Value>();
  const origins = new Map<string, string>();
  const ignored: string[] = [];
  const freeForm = new Map<string, Record<string, unknown>>();
  // A bad file value counts only if no flag overrides it: flags win.
  const fileErrors = new Map<string, string>();
  for (const d of defs) values.set(`${d.section}.${d.key}`, d.default);
  const flagLog = flags.get('log-file')?.at(-1);

  if (file !== undefined) {
    const doc = readToml(file);
    const fileLog = (doc.logging as Record<string, unknown> | undefined)?.log_file;
    const logNow = flagLog ?? (typeof fileLog === 'string' ? fileLog : undefined);
    if (logNow) sawLogFile(logNow);
    const known = new KnownNames(defs, documented);
    const sections = new Set(defs.map((d) => d.section));
    for (const [section, body] of Object.entries(doc)) {
      const problem = known.sectionProblem(file, section, body);
      if (problem) throw new ConfigError(problem);
      if (!isPlainObject(body)) throw new ConfigError(`${file}: ${section} must be a [${section}] section`);
      for (const key of Object.keys(body)) {
        const keyProblem = known.keyProblem(file, section, key);
        if (keyProblem) throw new ConfigError(keyProblem);
      }
      if (!sections.has(section)) {
        // A free-form section ([interpreter-aliases]) is kept whole for the command's own reading.
        if (documented[section] === '*') freeForm.set(section, body);
        else ignored.push(`[${section}]`);
        continue;
      }
      for (const [key, raw] of Object.entries(body)) {
        const def = defs.find((d) => d.section === section && d.key === key);
        if (!def) {
          ignored.push(`[${section}] ${key}`);
          continue;
        }
        const origin = `${file}: [${section}] ${key} = ${showValue(def, raw)}`;
        const v = convert(def.type, raw, false);
        if (v === undefined) fileErrors.set(`${section}.${key}`, `${origin} ${EXPECTED[def.type]}`);
        else values.set(`${section}.${key}`, v);
        origins.set(`${section}.${key}`, origin);
      }
    }
  } else if (flagLog) sawLogFile(flagLog);

  for (const [name, texts] of flags) {
    const def = defs.find((d) => flagName(d) === name);
    if (!def) {
      const near = nearest(name, defs.map(flagName));
      throw new ConfigError(`unknown option --${name}${near ? ` (did you mean --${near}?)` : ''} (see --help)`);
    }
    const id = `${def.section}.${def.key}`;
    let merged: Value | undefined;
    for (const text of texts) {
      const v = convert(def.type, text, true);
      if (v === undefined) throw new ConfigError(`--${name} ${showValue(def, text)} ${EXPECTED[def.type]}`);
      // Repeated list and table flags accumulate; anything else: the last one wins.
      if (Array.isArray(v) && Array.isArray(merged)) merged = [...merged, ...v];
      else if (def.type === 'table' && merged) merged = { ...(merged as object), ...(v as object) };
      else merged = v;
    }
    values.set(id, merged!);
    origins.set(id, `--${name} ${showValue(def, texts[texts.length - 1])}`);
    fileErrors.delete(id);
  }
  const [firstError] = fileErrors.values();
  if (firstError) throw new ConfigError(firstError);
  return new Config(values, origins, ignored, freeForm);
}

/** The --help text for a schema, one line a key, grouped by section. */
export function describeKeys(defs: KeyDef[]): string {
  const lines: string[] = [];
  let section = '';
  for (const d of defs) {
    if (d.section !== section) {
      section = d.section;
      lines.push('', `  [${section}]`);
    }
    const shown =
      d.type === 'duration' || d.type === 'seconds'
        ? formatDuration(d.default as number)
        : Array.isArray(d.default)
          ? d.default.join(',')
          : typeof d.default === 'object'
            ? ''
            : String(d.default);
    lines.push(`    --${flagName(d).padEnd(34)} ${d.help}${shown !== '' ? ` (default ${shown})` : ''}`);
  }
  return lines.join('\n');
}
