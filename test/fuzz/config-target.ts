// Config text (and command-line words) -> the loader and every key's parser, for rportd and rport alike.
// A file either loads or fails with one ConfigError line; anything else (another exception, a message over
// several lines, a value that is not finite) is a crash.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { parseArgs } from '../../src/config/args.js';
import { CLIENT_KEYS, clientConfig } from '../../src/config/client-config.js';
import { ConfigError, flagName, loadConfig, type KeyDef } from '../../src/config/loader.js';
import { MAX_TIMER_MS } from '../../src/timeout.js';
import { SERVER_KEYS, serverConfig } from '../../src/config/server-config.js';
import { assertOneLine, type Target } from './engine.js';

const ALL = [...SERVER_KEYS, ...CLIENT_KEYS];
const SECTIONS = [...new Set(ALL.map((d) => d.section))];

const tomlString = fc
  .oneof(
    fc.string({ maxLength: 40 }),
    fc.constantFrom(
      '3s',
      '1h30m',
      '0',
      '-5m',
      '250ms',
      '1000h',
      '596h31m23.648s',
      '1.5h',
      '99999999999999999999999h',
      '.s',
      '127.0.0.1:8080',
      '[::1]:80',
      'ws://x:1/',
      'c1:pw',
      ':x',
      '20000-30000',
      '0-70000',
      '2222:22',
      '0.0.0.0:8080:127.0.0.1:80',
      'debug',
      'none',
      '1-65535',
      '10.0.0.0/8',
      'http://proxy:3128',
    ),
  )
  .map((s) => JSON.stringify(s));

/** A TOML value of the key's type most of the time, of another type now and then. */
function value(def: KeyDef | undefined): fc.Arbitrary<string> {
  const any = fc.oneof(
    tomlString,
    fc.integer().map(String),
    fc.constantFrom(
      'true',
      'false',
      '1e400',
      '-0',
      'inf',
      'nan',
      '9007199254740993',
      '0x7fffffff',
      '1979-05-27T07:32:00Z',
      '07:32:00',
      '{}',
      '[]',
      '[[]]',
      '{ a = 1 }',
    ),
    fc.array(tomlString, { maxLength: 4 }).map((a) => `[${a.join(', ')}]`),
    fc.dictionary(fc.string({ maxLength: 8 }), tomlString, { maxKeys: 3 }).map(
      (o) =>
        `{ ${Object.entries(o)
          .map(([k, v]) => `${JSON.stringify(k)} = ${v}`)
          .join(', ')} }`,
    ),
  );
  return def?.type === 'strings'
    ? fc.oneof(
        fc.array(tomlString, { maxLength: 6 }).map((a) => `[${a.join(', ')}]`),
        any,
      )
    : any;
}

const line = fc.oneof(
  fc.constantFrom(...ALL).chain((d) => value(d).map((v) => `${d.key} = ${v}`)),
  fc.tuple(fc.string({ maxLength: 12 }), value(undefined)).map(([k, v]) => `${JSON.stringify(k)} = ${v}`),
  fc.constantFrom(...SECTIONS, 'remote', 'x.y', '').map((s) => `[${s}]`),
  fc.constantFrom(...ALL).chain((d) => fc.string({ maxLength: 12 }).map((v) => `#argv --${flagName(d)} ${v}`)),
  fc.string({ maxLength: 30 }),
);

const generate = fc.array(line, { maxLength: 16 }).map((lines) => Buffer.from(lines.join('\n')));

let file: string | undefined;

/** The file the loader reads, made at the first run and removed when the process exits. */
function configFile(): string {
  if (!file) {
    const dir = mkdtempSync(join(tmpdir(), 'rport-fuzz-config-'));
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    file = join(dir, 'fuzz.conf');
  }
  return file;
}

/** The durations that timers wait for: longer than MAX_TIMER_MS, Node.js fires them after 1 ms. */
const TIMERS = new Set([
  'loginTimeoutMs',
  'checkIntervalMs',
  'checkTimeoutMs',
  'keepAliveMs',
  'keepAliveTimeoutMs',
  'maxRetryIntervalMs',
  'connectTimeoutMs',
  'switchbackIntervalMs',
  'watchdogIntervalMs',
]);

function finite(v: unknown, path: string): void {
  if (typeof v === 'number' && !Number.isFinite(v)) throw new Error(`${path} is ${v}: a config value must be finite`);
  if (v && typeof v === 'object' && !(v instanceof URL)) {
    for (const [k, x] of Object.entries(v)) {
      if (TIMERS.has(k) && (x as number) > MAX_TIMER_MS)
        throw new Error(`${path}.${k} is ${x} ms, more than a timer can wait`);
      finite(x, `${path}.${k}`);
    }
  }
}

function attempt(what: string, fn: () => unknown): void {
  try {
    finite(fn(), what);
  } catch (err) {
    if (!(err instanceof ConfigError))
      throw new Error(`${what}: not a ConfigError but ${err instanceof Error ? err.stack : String(err)}`);
    assertOneLine(err.message, `${what}: config error`);
  }
}

export const configTarget: Target = {
  name: 'config',
  generate,
  dictionary: [
    ...ALL.map((d) => d.key),
    ...SECTIONS.map((s) => `\n[${s}]\n`),
    ' = ',
    '"',
    "'",
    '"""',
    '[',
    ']',
    '{',
    '}',
    ',',
    '\n',
    '#argv --',
    '=',
    '3s',
    'ms',
    'h',
    '-',
    '.',
    '1e400',
    'true',
    '0x',
    ':',
    '.0',
    'inf',
    '\\u0000',
    '\\',
  ],
  maxLen: 4096,
  cover: /\/dist\/src\/(config|cli\/main)|\/smol-toml\//,
  run(data) {
    // Files the key parsers read (tls_ca, tls_cert) must not be devices that never end.
    const text = data.toString('utf8').replace(/\/(dev|proc|sys)\//g, '/nonexistent/');
    const file = configFile();
    writeFileSync(file, text);
    // Words with control characters are left out: a shell user types them, no hostile peer can.
    const argv = text
      .split('\n')
      .filter((l) => l.startsWith('#argv '))
      .flatMap((l) => l.slice(6).split(' '))
      .filter((w) => !/[\x00-\x1f\x7f]/.test(w));
    for (const [defs, make, name] of [
      [SERVER_KEYS, serverConfig, 'rportd'],
      [CLIENT_KEYS, clientConfig, 'rport'],
    ] as const) {
      attempt(`${name} config`, () => {
        const args = parseArgs(argv, defs);
        return (make as (c: ReturnType<typeof loadConfig>) => unknown)(loadConfig(defs, file, args.flags));
      });
    }
  },
};
