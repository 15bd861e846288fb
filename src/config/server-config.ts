/* eslint-disable max-lines -- every key of RPort's rportd.conf in one table, as its documentation lists them */
import type { Level } from '../log.js';
import { logLevelOf } from './logging.js';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { AddressRules, isAnyAddress, isLoopback, parseHostPort, type HostPort } from '../shared/host-port.js';
import { type Config, type KeyDef } from './loader.js';
import { apiTls, tlsPair, type ApiTls, type TlsPair } from './tls-files.js';

// RPort's default; the client's state.json shares it without a clash (rportd.db, rportd-host-key).
const DEFAULT_DATA_DIR = process.platform === 'win32' ? 'C:\\ProgramData\\rport' : '/var/lib/rport';

/** rportd.conf: RPort's sections, keys and defaults for what this server implements. */
export const SERVER_KEYS: KeyDef[] = [
  {
    section: 'server',
    key: 'address',
    type: 'string',
    default: '0.0.0.0:8080',
    help: 'where clients connect (host:port)',
  },
  {
    section: 'server',
    key: 'tls_cert',
    type: 'string',
    default: '',
    help: 'PEM certificate: serve wss:// instead of ws://',
  },
  { section: 'server', key: 'tls_key', type: 'string', default: '', help: 'PEM private key of tls_cert' },
  {
    section: 'server',
    key: 'used_ports',
    type: 'strings',
    default: ['20000-30000'],
    help: 'ports (and ranges) tunnels may listen on; a random one when the API names none',
  },
  {
    section: 'server',
    key: 'excluded_ports',
    type: 'strings',
    default: ['1-1024'],
    help: 'ports never given to tunnels',
  },
  {
    section: 'server',
    key: 'tunnel_bind_addresses',
    type: 'strings',
    default: ['127.0.0.1', '::1', '0.0.0.0', '::'],
    help: 'IP addresses tunnels may listen on; the first is used when a tunnel names none, so by default such a tunnel stays on loopback (RPort: 0.0.0.0; put "0.0.0.0" first for that) (rport addition)',
  },
  {
    section: 'server',
    key: 'max_tunnels_per_client',
    type: 'int',
    default: 64,
    help: 'tunnels one client may have, from the API and its remotes together (rport addition)',
  },
  {
    section: 'server',
    key: 'key_seed',
    type: 'string',
    default: '',
    help: 'derive the host key from this text (default: a key generated once and kept in data_dir)',
  },
  {
    section: 'server',
    key: 'auth',
    type: 'string',
    default: '',
    secret: true,
    help: 'one client credential, "id:password"',
  },
  {
    section: 'server',
    key: 'auth_file',
    type: 'string',
    default: '',
    help: 'JSON file of client id to password (plain or bcrypt)',
  },
  {
    section: 'server',
    key: 'auth_multiuse_creds',
    type: 'bool',
    default: true,
    help: 'one credential may be used by several clients (each with its own id); false: by one client id only',
  },
  {
    section: 'server',
    key: 'equate_clientauthid_clientid',
    type: 'bool',
    default: false,
    help: "a client that sends no id gets its credential's id (needs auth_multiuse_creds = false)",
  },
  {
    section: 'server',
    key: 'max_auth_tries',
    type: 'int',
    default: 6,
    help: 'password attempts on one connection before it is closed (rport addition, as OpenSSH MaxAuthTries)',
  },
  {
    section: 'server',
    key: 'data_dir',
    type: 'string',
    default: DEFAULT_DATA_DIR,
    help: 'folder for the host key and server data',
  },
  {
    section: 'server',
    key: 'client_login_timeout',
    type: 'duration',
    default: 30_000,
    help: 'a new connection must get from TCP accept to an accepted connection request within this (rport addition)',
  },
  {
    section: 'server',
    key: 'max_unauthenticated_connections',
    type: 'int',
    default: 2048,
    help: 'connections that have not logged in yet, in all; at the limit the oldest is closed (rport addition)',
  },
  {
    section: 'server',
    key: 'max_unauthenticated_connections_per_address',
    type: 'int',
    default: 256,
    help: 'connections that have not logged in yet from one address; more are refused (rport addition)',
  },
  {
    section: 'server',
    key: 'purge_disconnected_clients',
    type: 'bool',
    default: false,
    help: 'remove clients disconnected for longer than keep_disconnected_clients; false keeps them',
  },
  {
    section: 'server',
    key: 'keep_disconnected_clients',
    type: 'duration',
    default: 3_600_000,
    help: 'with purge_disconnected_clients: how long a disconnected client stays (at most 168h)',
  },
  {
    section: 'server',
    key: 'purge_disconnected_clients_interval',
    type: 'duration',
    default: 60_000,
    help: 'with purge_disconnected_clients: how often to look for clients to remove',
  },
  {
    section: 'server',
    key: 'check_clients_connection_interval',
    type: 'duration',
    default: 300_000,
    help: 'ping a client silent for this long',
  },
  {
    section: 'server',
    key: 'check_clients_connection_timeout',
    type: 'duration',
    default: 30_000,
    help: 'drop a client that does not answer that ping within this',
  },
  {
    section: 'server',
    key: 'max_failed_login',
    type: 'int',
    default: 5,
    help: 'failed client logins from one address at one client id before that address may not try that id; 0 never bans',
  },
  {
    section: 'server',
    key: 'ban_time',
    type: 'seconds',
    default: 3_600_000,
    help: 'how long a ban of client logins lasts (a number of seconds, as in RPort)',
  },
  {
    section: 'api',
    key: 'address',
    type: 'string',
    default: '',
    flag: 'api-address',
    help: 'REST API address (host:port, e.g. 127.0.0.1:3000); empty (the default, as RPort) turns the API off',
  },
  {
    section: 'api',
    key: 'auth',
    type: 'string',
    default: '',
    flag: 'api-auth',
    secret: true,
    help: 'API credentials, "user:password" (HTTP basic)',
  },
  {
    section: 'api',
    key: 'cert_file',
    type: 'string',
    default: '',
    flag: 'api-cert-file',
    help: 'PEM certificate (intermediates after it): with key_file, the API and dashboard speak HTTPS only',
  },
  {
    section: 'api',
    key: 'key_file',
    type: 'string',
    default: '',
    flag: 'api-key-file',
    help: 'PEM private key of cert_file, unencrypted',
  },
  {
    section: 'api',
    key: 'tls_min',
    type: 'string',
    default: '1.3',
    flag: 'api-tls-min',
    help: 'the oldest TLS version the API accepts: "1.2" or "1.3" (as RPort)',
  },
  {
    section: 'api',
    key: 'max_token_lifetime',
    type: 'int',
    default: 2160,
    help: 'hours a bearer token from /login may live at most, asked-for lifetimes and the 24h default alike (0 to 2160; 0: 2160, as RPort)',
  },
  {
    section: 'api',
    key: 'max_failed_login',
    type: 'int',
    default: 5,
    flag: 'api-max-failed-login',
    help: 'failed API logins from one address at one user before that address may not try that user; 0 never bans',
  },
  {
    section: 'api',
    key: 'ban_time',
    type: 'seconds',
    default: 3_600_000,
    flag: 'api-ban-time',
    help: 'how long a ban of API logins lasts (a number of seconds, as in RPort)',
  },
  {
    section: 'database',
    key: 'db_type',
    type: 'string',
    default: 'sqlite',
    help: 'where the registry lives: "sqlite" (a file in data_dir, one node) or "postgres" (shared by the nodes of a cluster)',
  },
  {
    section: 'database',
    key: 'db_host',
    type: 'string',
    default: '127.0.0.1:5432',
    help: 'with db_type = "postgres": host:port, or the folder of its Unix socket',
  },
  {
    section: 'database',
    key: 'db_name',
    type: 'string',
    default: 'rport',
    help: 'with db_type = "postgres": the database',
  },
  {
    section: 'database',
    key: 'db_user',
    type: 'string',
    default: 'rport',
    help: 'with db_type = "postgres": the user',
  },
  {
    section: 'database',
    key: 'db_password',
    type: 'string',
    default: '',
    secret: true,
    help: 'with db_type = "postgres": the password (empty: none, e.g. for peer or trust auth)',
  },
  {
    section: 'database',
    key: 'node_address',
    type: 'string',
    default: '',
    help: "with db_type = \"postgres\": this node's host as other nodes and tunnel users reach it (default: the [api] address's host, or this machine's first non-loopback IPv4 address when that is 0.0.0.0 or ::) (rport addition)",
  },
  {
    section: 'database',
    key: 'allowed_node_addresses',
    type: 'strings',
    default: ['127.0.0.0/8', '::1', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'],
    help: 'with db_type = "postgres": the addresses (IPs, CIDRs, CIDR:port) this node calls other nodes\' APIs at; a node row in the database with any other address is not called (rport addition)',
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

export interface ServerConfig {
  address: HostPort;
  tls: TlsPair | undefined;
  tunnels: TunnelPolicy;
  keySeed: string;
  auth: string;
  authFile: string;
  /** auth_multiuse_creds */
  multiuseCreds: boolean;
  /** equate_clientauthid_clientid */
  equateAuthIdClientId: boolean;
  maxAuthTries: number;
  dataDir: string;
  /** keep_disconnected_clients when purge_disconnected_clients is true; undefined keeps clients forever (RPort). */
  keepDisconnectedMs: number | undefined;
  purgeIntervalMs: number;
  loginTimeoutMs: number;
  maxUnauthenticated: number;
  maxUnauthenticatedPerAddress: number;
  checkIntervalMs: number;
  checkTimeoutMs: number;
  maxFailedLogin: number;
  banTimeMs: number;
  /** The API's own login throttle ([api] max_failed_login and ban_time) and the cap on token lifetimes. */
  api: {
    address: HostPort | undefined;
    /** cert_file, key_file and tls_min: the API speaks HTTPS only. */
    tls: ApiTls | undefined;
    user: string;
    password: string;
    maxFailedLogin: number;
    banTimeMs: number;
    maxTokenLifetimeMs: number;
  };
  database: DatabaseConfig;
  /** This node's host as clients and tunnel users reach it: never a wildcard such as 0.0.0.0. */
  publicHost: string;
  logFile: string;
  logLevel: Level;
}

export type DatabaseConfig =
  | { type: 'sqlite' }
  | {
      type: 'postgres';
      host: string;
      port: number;
      name: string;
      user: string;
      password: string;
      nodeAddress: string;
      allowedNodes: AddressRules;
    };

/** Any address of this machine others can reach: the first non-loopback IPv4 address. */
function machineAddress(): string {
  for (const list of Object.values(networkInterfaces()))
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return '127.0.0.1';
}

function databaseConfig(c: Config, api: HostPort | undefined): DatabaseConfig {
  const type = c.get<string>('database', 'db_type');
  if (type === 'sqlite') return { type };
  if (type !== 'postgres') c.fail('database', 'db_type', 'must be "sqlite" (one node) or "postgres" (a cluster)');
  if (!api)
    c.fail(
      'api',
      'address',
      'is not set, and db_type = "postgres" needs it: the nodes of a cluster call each other through the API (use e.g. "0.0.0.0:3000")',
    );
  // RPort's form for a socket is "socket:/path".
  const hostText = c.get<string>('database', 'db_host').replace(/^socket:/, '');
  const socket = hostText.startsWith('/');
  const hp = socket ? { host: hostText, port: 5432 } : parseHostPort(hostText, '');
  if (!hp || !hp.host)
    return c.fail(
      'database',
      'db_host',
      'is neither host:port nor a socket folder (use e.g. "127.0.0.1:5432" or "/var/run/postgresql")',
    );
  const name = c.get<string>('database', 'db_name');
  if (!name) c.fail('database', 'db_name', 'is empty (use e.g. "rport")');
  const given = c.get<string>('database', 'node_address');
  const any = isAnyAddress(api.host);
  const nodeAddress = given || (any ? machineAddress() : api.host);
  const allowedNodes = allowedNodeAddresses(c);
  // The other nodes, with the same file, check this node's address before they call it.
  if (!isIP(nodeAddress)) {
    const what = given
      ? 'is not an IP address'
      : `is not set, and the [api] address host "${nodeAddress}" is not an IP address`;
    c.fail(
      'database',
      'node_address',
      `${what}: the other nodes check it against allowed_node_addresses (use e.g. "10.0.0.11")`,
    );
  }
  if (!allowedNodes.allows(nodeAddress, api.port))
    c.fail(
      'database',
      'allowed_node_addresses',
      `does not include this node's own address ${nodeAddress} (node_address, port ${api.port}): the other nodes would not call it (add e.g. "${nodeAddress}")`,
    );
  return {
    type,
    host: hp.host,
    port: hp.port,
    name,
    user: c.get<string>('database', 'db_user'),
    password: c.get<string>('database', 'db_password'),
    nodeAddress,
    allowedNodes,
  };
}

function allowedNodeAddresses(c: Config): AddressRules {
  const list = c.get<string[]>('database', 'allowed_node_addresses');
  // An empty list of AddressRules allows everything: here it would mean any listener a planted row names.
  if (list.length === 0)
    c.fail('database', 'allowed_node_addresses', 'is empty: no node could be called (use e.g. ["10.0.0.0/24"])');
  try {
    return AddressRules.parse(list);
  } catch (err) {
    return c.fail(
      'database',
      'allowed_node_addresses',
      `has ${(err as Error).message} (use e.g. ["10.0.0.0/24", "192.168.1.5"])`,
    );
  }
}

function portRanges(c: Config, key: string): Array<[number, number]> {
  return c.get<string[]>('server', key).map((r) => {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(r.trim());
    const from = Number(m?.[1]);
    const to = Number(m?.[2] ?? m?.[1]);
    if (!m || from < 1 || to > 65535 || from > to)
      c.fail('server', key, `has "${r}", which is not a port or a range (use e.g. "20000-30000")`);
    return [from, to] as [number, number];
  });
}

/** Where tunnels may listen, and how many a client may have. */
export interface TunnelPolicy {
  /** used_ports minus excluded_ports: an explicit port must be one of them; a random one is drawn from them. */
  ports: number[];
  /** used_ports and excluded_ports as configured, for refusals that name them. */
  usedPorts: string;
  excludedPorts: string;
  /** tunnel_bind_addresses: IP addresses, the first is the default. */
  bindAddresses: string[];
  maxPerClient: number;
}

function tunnelPolicy(c: Config): TunnelPolicy {
  const excluded = portRanges(c, 'excluded_ports');
  const ports = new Set<number>();
  for (const [from, to] of portRanges(c, 'used_ports')) {
    for (let p = from; p <= to; p++) if (!excluded.some(([a, b]) => p >= a && p <= b)) ports.add(p);
  }
  if (ports.size === 0) c.fail('server', 'used_ports', 'leaves no port once excluded_ports are taken out');
  const bindAddresses = c.get<string[]>('server', 'tunnel_bind_addresses').map((a) => a.trim());
  const notIp = bindAddresses.find((a) => !isIP(a));
  if (notIp !== undefined)
    c.fail(
      'server',
      'tunnel_bind_addresses',
      `has "${notIp}", which is not an IP address (use e.g. ["0.0.0.0", "127.0.0.1"])`,
    );
  if (bindAddresses.length === 0)
    c.fail('server', 'tunnel_bind_addresses', 'is empty: no tunnel could listen (use e.g. ["0.0.0.0"])');
  const maxPerClient = c.get<number>('server', 'max_tunnels_per_client');
  if (maxPerClient < 1) c.fail('server', 'max_tunnels_per_client', 'must be at least 1 (use e.g. 64)');
  return {
    ports: [...ports],
    usedPorts: c.get<string[]>('server', 'used_ports').join(','),
    excludedPorts: c.get<string[]>('server', 'excluded_ports').join(','),
    bindAddresses,
    maxPerClient,
  };
}

function positive(c: Config, key: string): number {
  const n = c.get<number>('server', key);
  const example = SERVER_KEYS.find((d) => d.section === 'server' && d.key === key)!.default;
  return n >= 1 ? n : c.fail('server', key, `must be 1 or more (use e.g. ${example})`);
}

const MAX_KEEP_DISCONNECTED_MS = 168 * 3_600_000;

function purgeSettings(c: Config): Pick<ServerConfig, 'keepDisconnectedMs' | 'purgeIntervalMs'> {
  const purgeIntervalMs = c.timer('server', 'purge_disconnected_clients_interval');
  if (!c.get<boolean>('server', 'purge_disconnected_clients'))
    return { keepDisconnectedMs: undefined, purgeIntervalMs };
  const keep = c.get<number>('server', 'keep_disconnected_clients');
  if (keep > MAX_KEEP_DISCONNECTED_MS)
    c.fail('server', 'keep_disconnected_clients', "is above RPort's maximum of 168h (use e.g. '24h')");
  if (purgeIntervalMs < 1000)
    c.fail('server', 'purge_disconnected_clients_interval', "must be at least 1s (use e.g. '1m')");
  return { keepDisconnectedMs: keep, purgeIntervalMs };
}

export function serverConfig(c: Config): ServerConfig {
  const address = parseHostPort(c.get<string>('server', 'address'));
  if (!address) c.fail('server', 'address', 'is not host:port (use e.g. "0.0.0.0:8080")');
  const auth = c.get<string>('server', 'auth');
  if (auth && auth.indexOf(':') <= 0) c.fail('server', 'auth', 'is not in the form "id:password"');
  const authFile = c.get<string>('server', 'auth_file');
  if (!auth && !authFile)
    c.fail(
      'server',
      'auth',
      'is not set and neither is auth_file: no client could log in (use e.g. auth = "client1:secret")',
    );
  const multiuseCreds = c.get<boolean>('server', 'auth_multiuse_creds');
  const equateAuthIdClientId = c.get<boolean>('server', 'equate_clientauthid_clientid');
  if (equateAuthIdClientId && multiuseCreds)
    c.fail(
      'server',
      'equate_clientauthid_clientid',
      'is true while auth_multiuse_creds is true: set auth_multiuse_creds = false too',
    );
  const checkIntervalMs = c.timer('server', 'check_clients_connection_interval');
  if (checkIntervalMs < 1000)
    c.fail('server', 'check_clients_connection_interval', "must be at least 1s (use e.g. '5m')");
  const checkTimeoutMs = c.timer('server', 'check_clients_connection_timeout');
  if (checkTimeoutMs < 100)
    c.fail('server', 'check_clients_connection_timeout', "must be at least 100ms (use e.g. '30s')");
  const maxFailedLogin = c.get<number>('server', 'max_failed_login');
  if (maxFailedLogin < 0) c.fail('server', 'max_failed_login', 'must be 0 (never ban) or more');
  const apiMaxFailedLogin = c.get<number>('api', 'max_failed_login');
  if (apiMaxFailedLogin < 0) c.fail('api', 'max_failed_login', 'must be 0 (never ban) or more');

  const apiText = c.get<string>('api', 'address');
  const apiAddress = apiText ? parseHostPort(apiText) : undefined;
  if (apiText && !apiAddress) c.fail('api', 'address', 'is not host:port (use e.g. "127.0.0.1:3000")');
  const apiAuth = c.get<string>('api', 'auth');
  const apiColon = apiAuth.indexOf(':');
  if (apiAuth && apiColon <= 0) c.fail('api', 'auth', 'is not in the form "user:password"');
  const maxTokenHours = c.get<number>('api', 'max_token_lifetime');
  if (maxTokenHours < 0 || maxTokenHours > 2160)
    c.fail('api', 'max_token_lifetime', 'must be 0 to 2160 hours (90 days) (use e.g. 720)');
  if (apiAddress && !apiAuth && !isLoopback(apiAddress.host)) {
    c.fail(
      'api',
      'auth',
      `is not set, and the API listens on ${apiText}, beyond this machine: set auth = "admin:a-long-password"`,
    );
  }

  const database = databaseConfig(c, apiAddress);
  return {
    address: address as HostPort,
    tls: tlsPair(c, 'server', 'tls_cert', 'tls_key'),
    tunnels: tunnelPolicy(c),
    keySeed: c.get<string>('server', 'key_seed'),
    auth,
    authFile,
    multiuseCreds,
    equateAuthIdClientId,
    maxAuthTries: positive(c, 'max_auth_tries'),
    dataDir: c.get<string>('server', 'data_dir'),
    ...purgeSettings(c),
    loginTimeoutMs:
      c.timer('server', 'client_login_timeout') ||
      c.fail('server', 'client_login_timeout', "must be above 0s (use e.g. '30s')"),
    maxUnauthenticated: positive(c, 'max_unauthenticated_connections'),
    maxUnauthenticatedPerAddress: positive(c, 'max_unauthenticated_connections_per_address'),
    checkIntervalMs,
    checkTimeoutMs,
    maxFailedLogin,
    banTimeMs: c.get<number>('server', 'ban_time'),
    api: {
      address: apiAddress,
      tls: apiTls(c),
      user: apiAuth.slice(0, apiColon),
      password: apiAuth.slice(apiColon + 1),
      maxFailedLogin: apiMaxFailedLogin,
      banTimeMs: c.get<number>('api', 'ban_time'),
      maxTokenLifetimeMs: (maxTokenHours || 2160) * 3600_000,
    },
    database,
    publicHost:
      database.type === 'postgres'
        ? database.nodeAddress
        : isAnyAddress(address!.host)
          ? machineAddress()
          : address!.host,
    logFile: c.get<string>('logging', 'log_file'),
    logLevel: logLevelOf(c),
  };
}
