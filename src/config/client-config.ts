/* eslint-disable max-lines -- every key of RPort's rport.conf in one table, as its documentation lists them */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { errorMessage, type Level } from '../log.js';
import { AddressRules, parseRemoteSpec } from '../shared/host-port.js';
import { type Config, ConfigError, type KeyDef } from './loader.js';
import { logLevelOf } from './logging.js';
import { parseServerUrl, type ServerUrl } from './server-url.js';
import { VERSION } from '../version.js';

/** Where the packages and the Windows service look for the config. */
export const DEFAULT_CLIENT_CONF =
  process.platform === 'win32' ? 'C:\\Program Files\\rport\\rport.conf' : '/etc/rport/rport.conf';
const DEFAULT_DATA_DIR = process.platform === 'win32' ? 'C:\\Program Files\\rport' : '/var/lib/rport';

/**
 * The shortest fingerprint prefix taken (RPort takes any prefix, even one character): 96 bits, more than
 * anyone can search for a key that shares them. 16 base64 characters of the SHA256 form, 12 of the 16 bytes
 * of RPort's MD5 form (aa:bb:...).
 */
export const MIN_FINGERPRINT_CHARS = 16;
export const MIN_MD5_FINGERPRINT_BYTES = 12;

/** Why a fingerprint cannot pin the server's key, or undefined: RPort's MD5 form or SHA256, each long enough. */
export function fingerprintProblem(value: string): string | undefined {
  const v = value.trim();
  const fix = `copy the whole "SHA256:..." from the line "host key fingerprint" that rportd logs at start`;
  if (/^[0-9a-f]{2}(:[0-9a-f]{2})*$/i.test(v)) {
    const bytes = (v.length + 1) / 3;
    if (bytes > 16)
      return `is not a fingerprint: an MD5 fingerprint (RPort's form aa:bb:...) has 16 bytes, this one ${bytes}; ${fix}`;
    return bytes >= MIN_MD5_FINGERPRINT_BYTES
      ? undefined
      : `is too short: an MD5 fingerprint (RPort's form aa:bb:...) pins a key from ${MIN_MD5_FINGERPRINT_BYTES} of its 16 bytes on, this one has ${bytes}; give all of it, or ${fix}`;
  }
  const bare = v.replace(/^SHA256:/, '');
  if (!/^[A-Za-z0-9+/]+$/.test(bare))
    return `is not a fingerprint (SHA256:<base64> or RPort's MD5 form aa:bb:...): ${fix}`;
  if (bare.length < MIN_FINGERPRINT_CHARS)
    return `is too short: ${bare.length} characters of the SHA256 fingerprint, fewer than ${MIN_FINGERPRINT_CHARS} pin no key; ${fix}`;
  return undefined;
}

/**
 * RPort's deny list, plus `$` and backticks (expansions, should use_shell be on) and the programs that run
 * another program named in their arguments: with them, an allowed folder would reach every program.
 */
const DEFAULT_DENY = [
  '(\\||<|>|;|,|\\n|&|\\$|`)',
  '(?i)^(\\S*[/\\\\])?(env|xargs|nohup|nice|ionice|chrt|taskset|timeout|setsid|stdbuf|flock|watch|script|sudo|su|doas|runuser|pkexec|chroot|unshare|nsenter|systemd-run|busybox|sh|bash|dash|zsh|ksh|mksh|csh|tcsh|fish|python[0-9.]*|perl[0-9.]*|ruby|node|nodejs|php[0-9.]*|lua[0-9.]*|tclsh|awk|gawk|mawk|nawk|find|ssh|expect|cmd|powershell|pwsh|wscript|cscript|rundll32|mshta)(\\.exe)?(\\s|$)',
];

/** rport.conf: RPort's sections, keys and defaults, plus a few of our own (marked). */
export const CLIENT_KEYS: KeyDef[] = [
  {
    section: 'client',
    key: 'server',
    type: 'string',
    default: '',
    help: 'rportd to connect to: host:port, ws://host:port or wss://host:port',
  },
  {
    section: 'client',
    key: 'fallback_servers',
    type: 'strings',
    default: [],
    help: 'servers tried in order when the main one fails',
  },
  {
    section: 'client',
    key: 'server_switchback_interval',
    type: 'duration',
    default: 120_000,
    help: 'while on a fallback, how often to try the main server again',
  },
  {
    section: 'client',
    key: 'fingerprint',
    type: 'string',
    default: '',
    help: "the server's host key fingerprint (SHA256:..., or RPort's MD5 form aa:bb:...; a prefix is enough); any other key is refused",
  },
  { section: 'client', key: 'auth', type: 'string', default: '', secret: true, help: 'credentials as "id:password"' },
  {
    section: 'client',
    key: 'proxy',
    type: 'string',
    default: '',
    help: 'HTTP CONNECT or SOCKS5 proxy: http://[user:pass@]host:port or socks5://[user:pass@]host:port',
  },
  { section: 'client', key: 'id', type: 'string', default: '', help: 'unique client id (default: see use_system_id)' },
  {
    section: 'client',
    key: 'use_system_id',
    type: 'bool',
    default: true,
    help: 'without id: use the machine id (/etc/machine-id) as the client id; false: the server gives a new id each connection',
  },
  { section: 'client', key: 'name', type: 'string', default: '', help: 'display name (default: see use_hostname)' },
  {
    section: 'client',
    key: 'use_hostname',
    type: 'bool',
    default: true,
    help: 'without name: use the host name as the name',
  },
  { section: 'client', key: 'tags', type: 'strings', default: [], help: 'tags shown by the server' },
  { section: 'client', key: 'data_dir', type: 'string', default: DEFAULT_DATA_DIR, help: 'folder for state.json' },
  {
    section: 'client',
    key: 'remotes',
    type: 'strings',
    default: [],
    help: "tunnels opened on connect, RPort's forms: '3389', '2222:22', '0.0.0.0:8080:127.0.0.1:80'",
  },
  {
    section: 'client',
    key: 'tunnel_allowed',
    type: 'strings',
    default: [],
    help: "targets tunnels may reach: '10.0.0.0/8', '192.168.1.5:22', ':3389'; empty allows all",
  },
  {
    section: 'client',
    key: 'tls_ca',
    type: 'string',
    default: '',
    help: 'PEM file of CAs to trust for wss:// besides the system store (rport addition)',
  },
  {
    section: 'connection',
    key: 'keep_alive',
    type: 'duration',
    default: 180_000,
    help: 'ping the server this often; 0s turns pings off',
  },
  {
    section: 'connection',
    key: 'keep_alive_timeout',
    type: 'duration',
    default: 30_000,
    help: 'a ping not answered within this closes the connection',
  },
  {
    section: 'connection',
    key: 'max_retry_count',
    type: 'int',
    default: -1,
    help: 'retries after a failed attempt before giving up (0: one attempt, no retry); -1 retries forever',
  },
  {
    section: 'connection',
    key: 'max_retry_interval',
    type: 'duration',
    default: 300_000,
    help: 'longest wait between two attempts',
  },
  {
    section: 'connection',
    key: 'connect_timeout',
    type: 'duration',
    default: 20_000,
    help: 'bound on one whole attempt: DNS, TCP, proxy, TLS, WebSocket, SSH, request (rport addition)',
  },
  {
    section: 'connection',
    key: 'watchdog_integration',
    type: 'bool',
    default: false,
    help: 'write state.json and notify systemd',
  },
  {
    section: 'connection',
    key: 'watchdog_interval',
    type: 'duration',
    default: 0,
    help: 'refresh state.json this often while healthy; 0s: only on events (rport addition)',
  },
  {
    section: 'connection',
    key: 'hostname',
    type: 'string',
    default: '',
    help: "the Host header of the WebSocket upgrade (default: the server URL's host)",
  },
  {
    section: 'connection',
    key: 'headers',
    type: 'table',
    default: {},
    flag: 'header',
    help: 'extra HTTP headers for the WebSocket upgrade ("Name: value", repeatable)',
  },
  {
    section: 'remote-commands',
    key: 'enabled',
    type: 'bool',
    default: true,
    flag: 'remote-commands-enabled',
    help: 'run commands the server sends (each checked against allow, deny and order)',
  },
  {
    section: 'remote-commands',
    key: 'send_back_limit',
    type: 'int',
    default: 4 << 20,
    help: 'bytes of stdout and of stderr (each) sent back; the rest is cut with a marker',
  },
  {
    section: 'remote-commands',
    key: 'allow',
    type: 'strings',
    default: ['^/usr/bin/.*', '^/usr/local/bin/.*', '^C:\\\\Windows\\\\System32\\\\.*'],
    flag: 'remote-commands-allow',
    help: 'regular expressions a command may match (see order)',
  },
  {
    section: 'remote-commands',
    key: 'deny',
    type: 'strings',
    default: DEFAULT_DENY,
    flag: 'remote-commands-deny',
    help: 'regular expressions a command may not match (see order)',
  },
  {
    section: 'remote-commands',
    key: 'use_shell',
    type: 'bool',
    default: false,
    flag: 'remote-commands-use-shell',
    help: "run commands through sh -c / cmd.exe /c (RPort's way; the filter then cannot see what the shell expands) instead of as a program and its arguments (rport addition)",
  },
  {
    section: 'remote-commands',
    key: 'order',
    type: 'strings',
    default: ['allow', 'deny'],
    flag: 'remote-commands-order',
    help: "['allow','deny']: must match allow and no deny; ['deny','allow']: refused if it matches deny and no allow",
  },
  {
    section: 'remote-scripts',
    key: 'enabled',
    type: 'bool',
    default: false,
    flag: 'remote-scripts-enabled',
    help: 'run scripts the server sends (not filtered: only [remote-commands] enabled applies)',
  },
  {
    section: 'logging',
    key: 'log_file',
    type: 'string',
    default: '',
    help: 'append logs to this file (default: stderr)',
  },
  { section: 'logging', key: 'log_level', type: 'string', default: 'info', help: 'error, warn, info or debug' },
];

export interface ClientConfig {
  servers: ServerUrl[];
  switchbackIntervalMs: number;
  fingerprint: string;
  authId: string;
  password: string;
  proxy: URL | undefined;
  id: string;
  name: string;
  tags: string[];
  /** [client] remotes, checked to be RPort tunnel forms. */
  remotes: string[];
  tunnelAllowed: AddressRules;
  dataDir: string;
  /** What the server shows as the machine's host name (the OS's). */
  hostname: string;
  /** PEM text of [client] tls_ca, read at start so a bad path is a config error, not a failure per attempt. */
  tlsCaPem: string | undefined;
  keepAliveMs: number;
  keepAliveTimeoutMs: number;
  maxRetryCount: number;
  maxRetryIntervalMs: number;
  connectTimeoutMs: number;
  watchdogIntegration: boolean;
  watchdogIntervalMs: number;
  /** Extra upgrade headers, [connection] hostname as Host among them. */
  headers: Record<string, string>;
  logFile: string;
  logLevel: Level;
  commands: CommandsConfig;
}

/** [remote-commands], [remote-scripts] and [interpreter-aliases], checked. */
export interface CommandsConfig {
  enabled: boolean;
  sendBackLimit: number;
  allow: RegExp[];
  deny: RegExp[];
  order: 'allow-deny' | 'deny-allow';
  scriptsEnabled: boolean;
  /** Alias name to the interpreter's path (RPort's encodings, the other list items, are not used). */
  aliases: Record<string, string>;
  /** Commands through sh -c / cmd.exe /c (RPort's way) rather than split into a program and its arguments. */
  useShell: boolean;
}

/** A bound of ours: the server keeps results in memory while they arrive. */
export const MAX_SEND_BACK_LIMIT = 16 << 20;

/** RPort's filters are Go regular expressions: the common (?i) prefix becomes JavaScript's i flag. */
function goRegex(c: Config, section: string, key: string, text: string): RegExp {
  const insensitive = text.startsWith('(?i)');
  try {
    return new RegExp(insensitive ? text.slice(4) : text, insensitive ? 'i' : '');
  } catch (err) {
    return c.fail(
      section,
      key,
      `has ${JSON.stringify(text)}, which is not a regular expression (${errorMessage(err).replace(/^Invalid regular expression: /, '')})`,
    );
  }
}

function commandsConfig(c: Config): CommandsConfig {
  const sendBackLimit = c.get<number>('remote-commands', 'send_back_limit');
  if (sendBackLimit < 1 || sendBackLimit > MAX_SEND_BACK_LIMIT)
    c.fail(
      'remote-commands',
      'send_back_limit',
      `must be 1 to ${MAX_SEND_BACK_LIMIT} bytes (16 MiB; RPort's default is 4194304)`,
    );
  const order = c.get<string[]>('remote-commands', 'order').join(',');
  if (order !== 'allow,deny' && order !== 'deny,allow')
    c.fail('remote-commands', 'order', "must be ['allow','deny'] or ['deny','allow']");
  const aliases: Record<string, string> = {};
  for (const [name, v] of Object.entries(c.freeForm.get('interpreter-aliases') ?? {})) {
    const path =
      typeof v === 'string'
        ? v
        : Array.isArray(v) && typeof v[0] === 'string' && v.every((x) => typeof x === 'string')
          ? v[0]
          : undefined;
    if (!path)
      throw new ConfigError(
        `[interpreter-aliases] ${name} is not an interpreter path or a list of strings (use e.g. ${name} = '/usr/bin/python3')`,
      );
    aliases[name] = path;
  }
  return {
    enabled: c.get<boolean>('remote-commands', 'enabled'),
    sendBackLimit,
    allow: c.get<string[]>('remote-commands', 'allow').map((r) => goRegex(c, 'remote-commands', 'allow', r)),
    deny: c.get<string[]>('remote-commands', 'deny').map((r) => goRegex(c, 'remote-commands', 'deny', r)),
    order: order === 'allow,deny' ? 'allow-deny' : 'deny-allow',
    scriptsEnabled: c.get<boolean>('remote-scripts', 'enabled'),
    aliases,
    useShell: c.get<boolean>('remote-commands', 'use_shell'),
  };
}

/**
 * The machine id as RPort's use_system_id reads it, unchanged, so a migrated fleet keeps its client ids:
 * Linux /var/lib/dbus/machine-id then /etc/machine-id; macOS the IOPlatformUUID; Windows the MachineGuid.
 */
export function machineId(): string {
  const errors: string[] = [];
  if (process.platform === 'darwin' || process.platform === 'win32') {
    const [cmd, args, re] =
      process.platform === 'darwin'
        ? ['ioreg', ['-rd1', '-c', 'IOPlatformExpertDevice'], /"IOPlatformUUID" = "([^"]+)"/]
        : [
            'reg',
            ['query', 'HKLM\\SOFTWARE\\Microsoft\\Cryptography', '/v', 'MachineGuid'],
            /MachineGuid\s+REG_SZ\s+(\S+)/,
          ];
    try {
      const m = re.exec(execFileSync(cmd, args, { encoding: 'utf8', timeout: 5000, windowsHide: true }));
      if (m) return m[1]!;
      errors.push(`${cmd}: no machine id in its output`);
    } catch (err) {
      errors.push(`${cmd}: ${errorMessage(err)}`);
    }
  } else {
    for (const f of ['/var/lib/dbus/machine-id', '/etc/machine-id']) {
      try {
        const id = readFileSync(f, 'utf8').trim();
        if (id) return id;
        errors.push(`${f} is empty`);
      } catch (err) {
        errors.push(`${f}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`);
      }
    }
  }
  throw new Error(errors.join('; '));
}

function readCaFile(c: Config): string | undefined {
  const file = c.get<string>('client', 'tls_ca');
  if (!file) return undefined;
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    c.fail('client', 'tls_ca', `cannot be read: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) c.fail('client', 'tls_ca', 'is not a PEM certificate file');
  return pem;
}

export function addressRules(c: Config, section: string, key: string): AddressRules {
  try {
    return AddressRules.parse(c.get<string[]>(section, key));
  } catch (err) {
    return c.fail(section, key, `has ${errorMessage(err)}`);
  }
}

/** The [connection] timings, checked: what the client runs on and what rport-watchdog budgets from. */
export type ConnectionTimings = Pick<
  ClientConfig,
  | 'keepAliveMs'
  | 'keepAliveTimeoutMs'
  | 'maxRetryCount'
  | 'maxRetryIntervalMs'
  | 'connectTimeoutMs'
  | 'watchdogIntegration'
>;

export function connectionTimings(c: Config): ConnectionTimings {
  const keepAliveMs = c.timer('connection', 'keep_alive');
  const keepAliveTimeoutMs = c.timer('connection', 'keep_alive_timeout');
  if (keepAliveMs > 0 && keepAliveTimeoutMs <= 0)
    c.fail('connection', 'keep_alive_timeout', 'must be above 0s while keep_alive is on');
  const maxRetryCount = c.get<number>('connection', 'max_retry_count');
  if (maxRetryCount < -1) c.fail('connection', 'max_retry_count', 'must be -1 (retry forever), 0 or more');
  const maxRetryIntervalMs = c.timer('connection', 'max_retry_interval');
  if (maxRetryIntervalMs < 1000) c.fail('connection', 'max_retry_interval', "must be at least 1s (use e.g. '5m')");
  const connectTimeoutMs = c.timer('connection', 'connect_timeout');
  if (connectTimeoutMs < 100) c.fail('connection', 'connect_timeout', "must be at least 100ms (use e.g. '20s')");

  const watchdogIntegration = c.get<boolean>('connection', 'watchdog_integration');
  if (watchdogIntegration) {
    if (keepAliveMs <= 0)
      c.fail(
        'connection',
        'watchdog_integration',
        'needs keep_alive above 0s, but it is 0s: set [connection] keep_alive = "3m"',
      );
    if (maxRetryCount !== -1)
      c.fail(
        'connection',
        'watchdog_integration',
        `needs max_retry_count = -1 (retry forever), but it is ${maxRetryCount}: set [connection] max_retry_count = -1`,
      );
  }
  return { keepAliveMs, keepAliveTimeoutMs, maxRetryCount, maxRetryIntervalMs, connectTimeoutMs, watchdogIntegration };
}

export function clientConfig(c: Config): ClientConfig {
  const server = c.get<string>('client', 'server');
  if (!server)
    throw new ConfigError(`${c.where('client', 'server')} is not set (use e.g. server = "rport.example.com:8080")`);
  const servers = [server, ...c.get<string[]>('client', 'fallback_servers')].map((s, i) => {
    const url = parseServerUrl(s);
    if (!url)
      c.fail(
        'client',
        i === 0 ? 'server' : 'fallback_servers',
        `has "${s}", which is not host:port, ws://host:port/ or wss://host:port/`,
      );
    return url;
  });

  // As RPort: RPORT_AUTH and RPORT_FINGERPRINT stand in for keys that neither the file nor a flag sets.
  const authEnv = !c.get<string>('client', 'auth') && !!process.env.RPORT_AUTH;
  const auth = authEnv ? process.env.RPORT_AUTH! : c.get<string>('client', 'auth');
  const colon = auth.indexOf(':');
  if (colon <= 0 && authEnv)
    throw new ConfigError(
      'the environment variable RPORT_AUTH is not in the form "id:password" (it stands in for [client] auth)',
    );
  if (colon <= 0)
    c.fail(
      'client',
      'auth',
      auth
        ? 'is not in the form "id:password"'
        : 'is not set (use e.g. auth = "client1:secret", or the environment variable RPORT_AUTH)',
    );

  const proxyText = c.get<string>('client', 'proxy');
  let proxy: URL | undefined;
  if (proxyText) {
    try {
      proxy = new URL(proxyText.includes('://') ? proxyText : `http://${proxyText}`);
    } catch {
      proxy = undefined;
    }
    if (proxy?.protocol === 'https:')
      c.fail(
        'client',
        'proxy',
        'is an https:// proxy, which neither RPort nor rport supports: use http:// or socks5://',
      );
    // URL hides a scheme's own port (http://proxy:80 has port ''), so the text says whether one was given.
    if (
      !proxy ||
      !['http:', 'socks5:', 'socks5h:'].includes(proxy.protocol) ||
      !(proxy.port || /:\d+\/?$/.test(proxyText))
    ) {
      c.fail(
        'client',
        'proxy',
        'is not a proxy address with a port (use e.g. "http://proxy.example.com:3128" or "socks5://proxy.example.com:1080")',
      );
    }
  }

  // As RPort: [client] id, else (use_system_id) the machine id as it is, else none and the server assigns one.
  let id = c.get<string>('client', 'id');
  if (!id && c.get<boolean>('client', 'use_system_id')) {
    try {
      id = machineId();
    } catch (err) {
      c.fail(
        'client',
        'use_system_id',
        `is true but the machine id cannot be read (${errorMessage(err)}): set [client] id = "a-unique-id", or use_system_id = false`,
      );
    }
  }
  // As RPort: hostname is the Host header, and a User-Agent naming the version unless one is given.
  const headers = { ...c.get<Record<string, string>>('connection', 'headers') };
  const has = (name: string) => Object.keys(headers).some((k) => k.toLowerCase() === name.toLowerCase());
  const hostHeader = c.get<string>('connection', 'hostname');
  if (hostHeader) {
    for (const k of Object.keys(headers)) if (k.toLowerCase() === 'host') delete headers[k];
    headers.Host = hostHeader;
  }
  if (!has('user-agent')) headers['User-Agent'] = `rport ${VERSION}`;

  const timings = connectionTimings(c);

  const fingerprint = c.get<string>('client', 'fingerprint') || process.env.RPORT_FINGERPRINT || '';
  const badFingerprint = fingerprint ? fingerprintProblem(fingerprint) : undefined;
  if (badFingerprint && !c.get<string>('client', 'fingerprint'))
    throw new ConfigError(
      `the environment variable RPORT_FINGERPRINT ${badFingerprint} (it stands in for [client] fingerprint)`,
    );
  if (badFingerprint) c.fail('client', 'fingerprint', badFingerprint);

  return {
    servers: servers as ServerUrl[],
    switchbackIntervalMs: c.timer('client', 'server_switchback_interval'),
    fingerprint,
    authId: auth.slice(0, colon),
    password: auth.slice(colon + 1),
    proxy,
    id,
    name: c.get<string>('client', 'name') || (c.get<boolean>('client', 'use_hostname') ? osHostname() : ''),
    hostname: osHostname(),
    tags: c.get<string[]>('client', 'tags'),
    remotes: c.get<string[]>('client', 'remotes').map((r) => {
      if (!parseRemoteSpec(r))
        c.fail(
          'client',
          'remotes',
          `has "${r}", which is not a tunnel (use e.g. "2222:22" or "0.0.0.0:8080:127.0.0.1:80")`,
        );
      return r;
    }),
    tunnelAllowed: addressRules(c, 'client', 'tunnel_allowed'),
    dataDir: c.get<string>('client', 'data_dir'),
    tlsCaPem: readCaFile(c),
    ...timings,
    watchdogIntervalMs: c.timer('connection', 'watchdog_interval'),
    headers,
    logFile: c.get<string>('logging', 'log_file'),
    logLevel: logLevelOf(c),
    commands: commandsConfig(c),
  };
}
