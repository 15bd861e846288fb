import { readFileSync } from 'node:fs';
import type { Level } from '../log.js';
import { logLevelOf } from './client-config.js';
import { parseHostPort, type HostPort } from './host-port.js';
import { Config, type KeyDef } from './loader.js';

const DEFAULT_DATA_DIR = process.platform === 'win32' ? 'C:\\Program Files\\rportd\\data' : '/var/lib/rportd';

/** rportd.conf: RPort's sections, keys and defaults for what this server implements. */
export const SERVER_KEYS: KeyDef[] = [
  { section: 'server', key: 'address', type: 'string', default: '0.0.0.0:8080', help: 'where clients connect (host:port)' },
  { section: 'server', key: 'tls_cert', type: 'string', default: '', help: 'PEM certificate: serve wss:// instead of ws://' },
  { section: 'server', key: 'tls_key', type: 'string', default: '', help: 'PEM private key of tls_cert' },
  { section: 'server', key: 'used_ports', type: 'strings', default: ['20000-30000'], help: 'ports (and ranges) tunnels get when the API names none' },
  { section: 'server', key: 'excluded_ports', type: 'strings', default: ['1-1024'], help: 'ports never given to tunnels' },
  { section: 'server', key: 'key_seed', type: 'string', default: '', help: 'derive the host key from this text (default: a key generated once and kept in data_dir)' },
  { section: 'server', key: 'auth', type: 'string', default: '', secret: true, help: 'one client credential, "id:password"' },
  { section: 'server', key: 'auth_file', type: 'string', default: '', help: 'JSON file of client id to password (plain or bcrypt)' },
  { section: 'server', key: 'auth_multiuse_creds', type: 'bool', default: true, help: 'one credential may be used by several clients (each with its own id); false: by one client id only' },
  { section: 'server', key: 'equate_clientauthid_clientid', type: 'bool', default: false, help: "a client's id must equal its credential's id (needs auth_multiuse_creds = false)" },
  { section: 'server', key: 'max_auth_tries', type: 'int', default: 6, help: 'password attempts on one connection before it is closed (rport addition, as OpenSSH MaxAuthTries)' },
  { section: 'server', key: 'data_dir', type: 'string', default: DEFAULT_DATA_DIR, help: 'folder for the host key and server data' },
  { section: 'server', key: 'client_login_timeout', type: 'duration', default: 30_000, help: 'a new connection must get from TCP accept to an accepted connection request within this (rport addition)' },
  { section: 'server', key: 'max_unauthenticated_connections', type: 'int', default: 2048, help: 'connections that have not logged in yet, in all; at the limit the oldest is closed (rport addition)' },
  { section: 'server', key: 'max_unauthenticated_connections_per_address', type: 'int', default: 256, help: 'connections that have not logged in yet from one address; more are refused (rport addition)' },
  { section: 'server', key: 'keep_disconnected_clients', type: 'duration', default: 3_600_000, help: 'how long a disconnected client stays in the registry' },
  { section: 'server', key: 'check_clients_connection_interval', type: 'duration', default: 300_000, help: 'ping a client silent for this long' },
  { section: 'server', key: 'check_clients_connection_timeout', type: 'duration', default: 30_000, help: 'drop a client that does not answer that ping within this' },
  { section: 'server', key: 'max_failed_login', type: 'int', default: 5, help: 'failed logins from one address before it is banned; 0 never bans' },
  { section: 'server', key: 'ban_time', type: 'seconds', default: 3_600_000, help: 'how long a banned address is refused' },
  { section: 'api', key: 'address', type: 'string', default: '127.0.0.1:3000', flag: 'api-address', help: 'REST API address (host:port); empty turns the API off' },
  { section: 'api', key: 'auth', type: 'string', default: '', flag: 'api-auth', secret: true, help: 'API credentials, "user:password" (HTTP basic)' },
  { section: 'logging', key: 'log_file', type: 'string', default: '', help: 'append logs to this file (default: stderr)' },
  { section: 'logging', key: 'log_level', type: 'string', default: 'info', help: 'error, warn, info or debug' },
];

export interface ServerConfig {
  address: HostPort;
  tls: { cert: string; key: string } | undefined;
  /** Ports tunnels may get when none is asked for: used_ports minus excluded_ports. */
  tunnelPorts: number[];
  keySeed: string;
  auth: string;
  authFile: string;
  /** auth_multiuse_creds */
  multiuseCreds: boolean;
  /** equate_clientauthid_clientid */
  equateAuthIdClientId: boolean;
  maxAuthTries: number;
  dataDir: string;
  keepDisconnectedMs: number;
  loginTimeoutMs: number;
  maxUnauthenticated: number;
  maxUnauthenticatedPerAddress: number;
  checkIntervalMs: number;
  checkTimeoutMs: number;
  maxFailedLogin: number;
  banTimeMs: number;
  api: { address: HostPort | undefined; user: string; password: string };
  logFile: string;
  logLevel: Level;
}

function readTls(c: Config): ServerConfig['tls'] {
  const certFile = c.get<string>('server', 'tls_cert');
  const keyFile = c.get<string>('server', 'tls_key');
  if (!certFile && !keyFile) return undefined;
  if (!certFile || !keyFile) c.fail('server', certFile ? 'tls_cert' : 'tls_key', 'is set without its partner: set both tls_cert and tls_key');
  const read = (key: string, file: string) => {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      return c.fail('server', key, `cannot be read: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  };
  return { cert: read('tls_cert', certFile), key: read('tls_key', keyFile) };
}

function portRanges(c: Config, key: string): Array<[number, number]> {
  return c.get<string[]>('server', key).map((r) => {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(r.trim());
    const from = Number(m?.[1]);
    const to = Number(m?.[2] ?? m?.[1]);
    if (!m || from < 1 || to > 65535 || from > to) c.fail('server', key, `has "${r}", which is not a port or a range (use e.g. "20000-30000")`);
    return [from, to] as [number, number];
  });
}

function tunnelPorts(c: Config): number[] {
  const excluded = portRanges(c, 'excluded_ports');
  const ports = new Set<number>();
  for (const [from, to] of portRanges(c, 'used_ports')) {
    for (let p = from; p <= to; p++) if (!excluded.some(([a, b]) => p >= a && p <= b)) ports.add(p);
  }
  if (ports.size === 0) c.fail('server', 'used_ports', 'leaves no port once excluded_ports are taken out');
  return [...ports];
}

function positive(c: Config, key: string): number {
  const n = c.get<number>('server', key);
  return n >= 1 ? n : c.fail('server', key, 'must be 1 or more');
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

export function serverConfig(c: Config): ServerConfig {
  const address = parseHostPort(c.get<string>('server', 'address'));
  if (!address) c.fail('server', 'address', 'is not host:port (use e.g. "0.0.0.0:8080")');
  const auth = c.get<string>('server', 'auth');
  if (auth && auth.indexOf(':') <= 0) c.fail('server', 'auth', 'is not in the form "id:password"');
  const authFile = c.get<string>('server', 'auth_file');
  if (!auth && !authFile) c.fail('server', 'auth', 'is not set and neither is auth_file: no client could log in (use e.g. auth = "client1:secret")');
  const multiuseCreds = c.get<boolean>('server', 'auth_multiuse_creds');
  const equateAuthIdClientId = c.get<boolean>('server', 'equate_clientauthid_clientid');
  if (equateAuthIdClientId && multiuseCreds) c.fail('server', 'equate_clientauthid_clientid', 'is true while auth_multiuse_creds is true: set auth_multiuse_creds = false too');
  const checkIntervalMs = c.timer('server', 'check_clients_connection_interval');
  if (checkIntervalMs < 1000) c.fail('server', 'check_clients_connection_interval', "must be at least 1s (use e.g. '5m')");
  const checkTimeoutMs = c.timer('server', 'check_clients_connection_timeout');
  if (checkTimeoutMs < 100) c.fail('server', 'check_clients_connection_timeout', "must be at least 100ms (use e.g. '30s')");
  const maxFailedLogin = c.get<number>('server', 'max_failed_login');
  if (maxFailedLogin < 0) c.fail('server', 'max_failed_login', 'must be 0 (never ban) or more');

  const apiText = c.get<string>('api', 'address');
  const apiAddress = apiText ? parseHostPort(apiText) : undefined;
  if (apiText && !apiAddress) c.fail('api', 'address', 'is not host:port (use e.g. "127.0.0.1:3000")');
  const apiAuth = c.get<string>('api', 'auth');
  const apiColon = apiAuth.indexOf(':');
  if (apiAuth && apiColon <= 0) c.fail('api', 'auth', 'is not in the form "user:password"');
  if (apiAddress && !apiAuth && !isLoopback(apiAddress.host)) {
    c.fail('api', 'auth', `is not set, and the API listens on ${apiText}, beyond this machine: set auth = "admin:a-long-password"`);
  }

  return {
    address: address as HostPort,
    tls: readTls(c),
    tunnelPorts: tunnelPorts(c),
    keySeed: c.get<string>('server', 'key_seed'),
    auth,
    authFile,
    multiuseCreds,
    equateAuthIdClientId,
    maxAuthTries: positive(c, 'max_auth_tries'),
    dataDir: c.get<string>('server', 'data_dir'),
    keepDisconnectedMs: c.get<number>('server', 'keep_disconnected_clients'),
    loginTimeoutMs: c.timer('server', 'client_login_timeout') || c.fail('server', 'client_login_timeout', "must be above 0s (use e.g. '30s')"),
    maxUnauthenticated: positive(c, 'max_unauthenticated_connections'),
    maxUnauthenticatedPerAddress: positive(c, 'max_unauthenticated_connections_per_address'),
    checkIntervalMs,
    checkTimeoutMs,
    maxFailedLogin,
    banTimeMs: c.get<number>('server', 'ban_time'),
    api: { address: apiAddress, user: apiAuth.slice(0, apiColon), password: apiAuth.slice(apiColon + 1) },
    logFile: c.get<string>('logging', 'log_file'),
    logLevel: logLevelOf(c),
  };
}
