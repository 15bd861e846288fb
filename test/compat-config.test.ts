// Every key of RPort's two example files (openrport's rport.example.conf and rportd.example.conf), each in
// the form those files document it: a key rport implements loads with RPort's meaning, any other is named
// as not implemented. The tables are written from the example files, not from rport's own lists, so a key
// missing from rport's documented set fails here.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { test } from 'node:test';
import { CLIENT_KEYS, clientConfig, machineId, type ClientConfig } from '../src/config/client-config.js';
import { ConfigError, loadConfig, type Config } from '../src/config/loader.js';
import { RPORT_CLIENT_NAMES, RPORT_SERVER_NAMES } from '../src/config/rport-names.js';
import { SERVER_KEYS, serverConfig, type ServerConfig } from '../src/config/server-config.js';
import { parseServerUrl } from '../src/config/server-url.js';
import { VERSION } from '../src/version.js';
import { tmpDir, writeFile } from '../harness/procs.js';

// { refused }: implemented, and the example's value is refused here with that line (a file this machine lacks).
type Row<C> = [section: string, key: string, toml: string, expect: ((c: C) => void) | 'ignored' | { refused: RegExp }];

const CLIENT_ROWS: Array<Row<ClientConfig>> = [
  ['client', 'server', '"0.0.0.0:8080"', (c) => assert.equal(c.servers[0]!.href, 'ws://0.0.0.0:8080/')],
  [
    'client',
    'fallback_servers',
    '["fallback-a.example.com:9090","fallback-b.example.com:80"]',
    (c) =>
      assert.deepEqual(
        c.servers.slice(1).map((s) => s.href),
        ['ws://fallback-a.example.com:9090/', 'ws://fallback-b.example.com:80/'],
      ),
  ],
  ['client', 'server_switchback_interval', "'2m'", (c) => assert.equal(c.switchbackIntervalMs, 120_000)],
  [
    'client',
    'fingerprint',
    '"36:98:56:12:f3:dc:e5:8d:ac:96:48:23:b6:f0:42:15"',
    (c) => assert.equal(c.fingerprint, '36:98:56:12:f3:dc:e5:8d:ac:96:48:23:b6:f0:42:15'),
  ],
  ['client', 'auth', '"clientAuth1:1234"', (c) => assert.deepEqual([c.authId, c.password], ['clientAuth1', '1234'])],
  [
    'client',
    'proxy',
    '"http://admin:password@my-server.com:8081"',
    (c) => assert.equal(c.proxy?.href, 'http://admin:password@my-server.com:8081/'),
  ],
  ['client', 'use_system_id', 'true', (c) => assert.equal(c.id, readFileSync('/etc/machine-id', 'utf8').trim())],
  [
    'client',
    'id',
    '"5616a70e-81a0-4eec-bab3-0861e3c88334"',
    (c) => assert.equal(c.id, '5616a70e-81a0-4eec-bab3-0861e3c88334'),
  ],
  ['client', 'use_hostname', 'true', (c) => assert.equal(c.name, hostname())],
  ['client', 'name', '"my_win_vm_1"', (c) => assert.equal(c.name, 'my_win_vm_1')],
  ['client', 'attributes_file_path', '"/var/lib/rport/client_attributes.json"', 'ignored'],
  ['client', 'tags', "['win', 'server', 'vm']", (c) => assert.deepEqual(c.tags, ['win', 'server', 'vm'])],
  ['client', 'remotes', "[\n  '3389:3389',\n  '5050'\n]", (c) => assert.deepEqual(c.remotes, ['3389:3389', '5050'])],
  [
    'client',
    'tunnel_allowed',
    "[':80','192.168.1.0/24:3389','192.168.1.100']",
    (c) => {
      assert.deepEqual(
        [
          c.tunnelAllowed.allows('127.0.0.1', 80),
          c.tunnelAllowed.allows('192.168.1.7', 3389),
          c.tunnelAllowed.allows('192.168.1.100', 22),
        ],
        [true, true, true],
      );
      assert.equal(c.tunnelAllowed.allows('192.168.1.7', 22), false);
    },
  ],
  ['client', 'allow_root', 'false', 'ignored'],
  ['client', 'updates_interval', "'4h'", 'ignored'],
  ['client', 'data_dir', '"/var/lib/rport"', (c) => assert.equal(c.dataDir, '/var/lib/rport')],
  ['client', 'bind_interface', '"eth0"', 'ignored'],
  ['client', 'ip_api_url', '"https://myip.openrport.io"', 'ignored'],
  ['client', 'ip_refresh_min', '30', 'ignored'],
  ['connection', 'keep_alive', "'3m'", (c) => assert.equal(c.keepAliveMs, 180_000)],
  ['connection', 'keep_alive_timeout', "'30s'", (c) => assert.equal(c.keepAliveTimeoutMs, 30_000)],
  ['connection', 'max_retry_count', '10', (c) => assert.equal(c.maxRetryCount, 10)],
  ['connection', 'max_retry_interval', "'5m'", (c) => assert.equal(c.maxRetryIntervalMs, 300_000)],
  ['connection', 'watchdog_integration', 'false', (c) => assert.equal(c.watchdogIntegration, false)],
  ['connection', 'hostname', '"myvm1.lan"', (c) => assert.equal(c.headers.Host, 'myvm1.lan')],
  [
    'connection',
    'headers',
    "['User-Agent: test1', 'Authorization: Basic XXXXXX']",
    (c) => assert.deepEqual(c.headers, { 'User-Agent': 'test1', Authorization: 'Basic XXXXXX' }),
  ],
  ['logging', 'log_file', '"/var/log/rport/rport.log"', (c) => assert.equal(c.logFile, '/var/log/rport/rport.log')],
  ['logging', 'log_level', '"info"', (c) => assert.equal(c.logLevel, 'info')],
  ['remote-commands', 'enabled', 'true', (c) => assert.equal(c.commands.enabled, true)],
  ['remote-commands', 'send_back_limit', '4194304', (c) => assert.equal(c.commands.sendBackLimit, 4194304)],
  [
    'remote-commands',
    'allow',
    "['^/usr/bin/.*','^/usr/local/bin/.*','^C:\\\\Windows\\\\System32\\\\.*']",
    (c) =>
      assert.deepEqual(
        c.commands.allow.map((r) => r.test('C:\\Windows\\System32\\ipconfig.exe')),
        [false, false, true],
      ),
  ],
  [
    'remote-commands',
    'deny',
    "['(\\||<|>|;|,|\\n|&)']",
    (c) => assert.equal(c.commands.deny[0]!.test('/usr/bin/a | b'), true),
  ],
  ['remote-commands', 'order', "['allow','deny']", (c) => assert.equal(c.commands.order, 'allow-deny')],
  ['remote-scripts', 'enabled', 'false', (c) => assert.equal(c.commands.scriptsEnabled, false)],
  ['monitoring', 'enabled', 'true', 'ignored'],
  ['monitoring', 'interval', '60', 'ignored'],
  [
    'monitoring',
    'fs_type_include',
    "['ext3','ext4','xfs','jfs','ntfs','btrfs','hfs','apfs','exfat','smbfs','nfs']",
    'ignored',
  ],
  ['monitoring', 'fs_path_exclude', "['/mnt/*','h:']", 'ignored'],
  ['monitoring', 'fs_path_exclude_recurse', 'false', 'ignored'],
  ['monitoring', 'fs_identify_mountpoints_by_device', 'true', 'ignored'],
  ['monitoring', 'pm_enabled', 'true', 'ignored'],
  ['monitoring', 'pm_enable_kerneltask_monitoring', 'true', 'ignored'],
  ['monitoring', 'pm_max_number_monitored_processes', '500', 'ignored'],
  ['monitoring', 'net_lan', "['', '1000']", 'ignored'],
  ['monitoring', 'net_wan', "['', '1000']", 'ignored'],
  [
    'interpreter-aliases',
    'pwsh7',
    "'C:\\Program Files\\PowerShell\\7\\pwsh.exe'",
    (c) => assert.equal(c.commands.aliases.pwsh7, 'C:\\Program Files\\PowerShell\\7\\pwsh.exe'),
  ],
  [
    'interpreter-aliases',
    'pwsh7enc',
    "['C:\\Program Files\\PowerShell\\7\\pwsh.exe', 'windows-1252', 'cp437']",
    (c) => assert.equal(c.commands.aliases.pwsh7enc, 'C:\\Program Files\\PowerShell\\7\\pwsh.exe'),
  ],
  ['file-reception', 'enabled', 'true', 'ignored'],
  [
    'file-reception',
    'protected',
    "['/bin', '/sbin', '/boot', '/usr/bin', '/usr/sbin', '/dev', '/lib*', '/run']",
    'ignored',
  ],
];

const SERVER_ROWS: Array<Row<ServerConfig>> = [
  ['server', 'address', '"0.0.0.0:8080"', (c) => assert.deepEqual(c.address, { host: '0.0.0.0', port: 8080 })],
  ['server', 'url', '["http://rport.example.com", "http://192.168.1.1:8000"]', 'ignored'],
  ['server', 'tunnel_host', '"tunnels.rport.example.com"', 'ignored'],
  ['server', 'pairing_url', '"https://pairing.example.com"', 'ignored'],
  ['server', 'key_seed', '"<YOUR_SEED>"', (c) => assert.equal(c.keySeed, '<YOUR_SEED>')],
  ['server', 'auth', '"clientAuth1:1234"', (c) => assert.equal(c.auth, 'clientAuth1:1234')],
  [
    'server',
    'auth_file',
    '"/var/lib/rport/client-auth.json"',
    (c) => assert.equal(c.authFile, '/var/lib/rport/client-auth.json'),
  ],
  ['server', 'auth_table', '"clients_auth"', 'ignored'],
  ['server', 'auth_multiuse_creds', 'true', (c) => assert.equal(c.multiuseCreds, true)],
  ['server', 'equate_clientauthid_clientid', 'false', (c) => assert.equal(c.equateAuthIdClientId, false)],
  ['server', 'auth_write', 'true', 'ignored'],
  ['server', 'proxy', '"http://intranet.lan:8080/"', 'ignored'],
  [
    'server',
    'used_ports',
    "[ '1024-2000', '9000', '9090' ]",
    (c) => assert.deepEqual([c.tunnels.ports.length, c.tunnels.ports.at(-1)], [2000 - 1025 + 1 + 2, 9090]),
  ],
  ['server', 'excluded_ports', "['1-1024']", (c) => assert.equal(Math.min(...c.tunnels.ports), 20000)],
  ['server', 'data_dir', '"/var/lib/rport"', (c) => assert.equal(c.dataDir, '/var/lib/rport')],
  ['server', 'sqlite_wal', 'true', 'ignored'],
  ['server', 'max_concurrent_ssh_handshakes', '4', 'ignored'],
  ['server', 'purge_disconnected_clients', 'false', (c) => assert.equal(c.keepDisconnectedMs, undefined)],
  [
    'server',
    'keep_disconnected_clients',
    '"1h"',
    (c) => assert.equal(c.keepDisconnectedMs, undefined, 'ignored without purge_disconnected_clients = true'),
  ],
  ['server', 'purge_disconnected_clients_interval', '"1m"', (c) => assert.equal(c.purgeIntervalMs, 60_000)],
  ['server', 'check_clients_connection_interval', '"5m"', (c) => assert.equal(c.checkIntervalMs, 300_000)],
  ['server', 'check_clients_connection_timeout', '"30s"', (c) => assert.equal(c.checkTimeoutMs, 30_000)],
  ['server', 'max_request_bytes_client', '524288', 'ignored'],
  ['server', 'run_remote_cmd_timeout_sec', '60', 'ignored'],
  ['server', 'check_port_timeout', '"1s"', 'ignored'],
  ['server', 'allow_root', 'false', 'ignored'],
  ['server', 'client_login_wait', '2.0', 'ignored'],
  ['server', 'max_failed_login', '5', (c) => assert.equal(c.maxFailedLogin, 5)],
  ['server', 'ban_time', '3600', (c) => assert.equal(c.banTimeMs, 3_600_000)],
  ['server', 'tunnel_proxy_cert_file', '"/var/lib/rport/server.crt"', 'ignored'],
  ['server', 'tunnel_proxy_key_file', '"/var/lib/rport/server.key"', 'ignored'],
  ['server', 'tunnel_enable_acme', 'false', 'ignored'],
  ['server', 'tunnel_cors', '[]', 'ignored'],
  ['server', 'novnc_root', '"/var/lib/rport/novncroot"', 'ignored'],
  ['server', 'guacd_address', '"127.0.0.1:4822"', 'ignored'],
  ['server', 'jobs_max_results', '10000', 'ignored'],
  ['server', 'tls_min', '"1.3"', 'ignored'],
  ['server', 'acme_http_port', '80', 'ignored'],
  ['logging', 'log_file', '"/var/log/rport/rportd.log"', (c) => assert.equal(c.logFile, '/var/log/rport/rportd.log')],
  ['logging', 'log_level', '"info"', (c) => assert.equal(c.logLevel, 'info')],
  ['api', 'address', '"0.0.0.0:3000"', (c) => assert.deepEqual(c.api.address, { host: '0.0.0.0', port: 3000 })],
  ['api', 'base_url', '"https://rport.example.com:443"', 'ignored'],
  ['api', 'enable_acme', 'false', 'ignored'],
  ['api', 'auth', '"admin:foobaz"', (c) => assert.deepEqual([c.api.user, c.api.password], ['admin', 'foobaz'])],
  ['api', 'auth_file', '"/var/lib/rport/api-auth.json"', 'ignored'],
  ['api', 'auth_user_table', '"users"', 'ignored'],
  ['api', 'auth_group_table', '"groups"', 'ignored'],
  ['api', 'auth_group_details_table', '"group_details"', 'ignored'],
  ['api', 'auth_header', '"Authentication-IsAuthenticated"', 'ignored'],
  ['api', 'user_header', '"Authentication-User"', 'ignored'],
  ['api', 'create_missing_users', 'true', 'ignored'],
  ['api', 'default_user_group', '"Administrators"', 'ignored'],
  ['api', 'two_fa_token_delivery', "'smtp'", 'ignored'],
  ['api', 'two_fa_token_ttl_seconds', '600', 'ignored'],
  ['api', 'two_fa_send_timeout', "'10s'", 'ignored'],
  ['api', 'two_fa_send_to_type', "'none'", 'ignored'],
  ['api', 'two_fa_send_to_regex', "'[a-z0-9]{10}'", 'ignored'],
  ['api', 'totp_enabled', 'false', 'ignored'],
  ['api', 'totp_login_session_ttl', "'600s'", 'ignored'],
  ['api', 'totp_account_name', "'RPort'", 'ignored'],
  ['api', 'jwt_secret', '"<YOUR_SECRET>"', 'ignored'],
  ['api', 'max_token_lifetime', '720', (c) => assert.equal(c.api.maxTokenLifetimeMs, 720 * 3600_000)],
  ['api', 'doc_root', '"/var/lib/rport/docroot"', 'ignored'],
  ['api', 'cert_file', '"/var/lib/rport/server.crt"', { refused: /cert_file .* is set without its partner/ }],
  ['api', 'key_file', '"/var/lib/rport/server.key"', { refused: /key_file .* is set without its partner/ }],
  ['api', 'access_log_file', '"/var/log/rport/api-access.log"', 'ignored'],
  ['api', 'user_login_wait', '2.0', 'ignored'],
  ['api', 'max_failed_login', '7', (c) => assert.equal(c.api.maxFailedLogin, 7)],
  ['api', 'ban_time', '600', (c) => assert.equal(c.api.banTimeMs, 600_000)],
  ['api', 'enable_audit_log', 'true', 'ignored'],
  ['api', 'use_ip_obfuscation', 'false', 'ignored'],
  ['api', 'audit_log_rotation', "'monthly'", 'ignored'],
  ['api', 'password_min_length', '14', 'ignored'],
  ['api', 'password_zxcvbn_minscore', '0', 'ignored'],
  ['api', 'tls_min', '"1.3"', (c) => assert.equal(c.api.tls, undefined)],
  ['api', 'max_request_bytes', '10240', 'ignored'],
  ['api', 'max_filepush_size', '10485760', 'ignored'],
  ['api', 'cors', '[]', 'ignored'],
  ['api', 'enable_ws_test_endpoints', 'false', 'ignored'],
  // RPort's own database keys, rport's registry: with sqlite, RPort ignores the others but db_name (here:
  // rportd.db in data_dir); rport's second type is postgres, not mysql (test/cluster.test.ts).
  ['database', 'db_type', '"sqlite"', (c) => assert.deepEqual(c.database, { type: 'sqlite' })],
  ['database', 'db_host', '"127.0.0.1:3306"', (c) => assert.equal(c.database.type, 'sqlite')],
  ['database', 'db_user', '"rport"', (c) => assert.equal(c.database.type, 'sqlite')],
  ['database', 'db_password', '"password"', (c) => assert.equal(c.database.type, 'sqlite')],
  ['database', 'db_name', '"/var/lib/rport/database.sqlite3"', (c) => assert.equal(c.database.type, 'sqlite')],
  ['caddy-integration', 'caddy', '"/usr/bin/caddy"', 'ignored'],
  ['caddy-integration', 'address', '"0.0.0.0:8443"', 'ignored'],
  ['caddy-integration', 'subdomain_prefix', '"tunnels.rport.test"', 'ignored'],
  ['caddy-integration', 'cert_file', '"/etc/letsencrypt/live/x/fullchain.pem"', 'ignored'],
  ['caddy-integration', 'key_file', '"/etc/letsencrypt/live/x/privkey.pem"', 'ignored'],
  ['caddy-integration', 'api_hostname', '"rport-api.example.com"', 'ignored'],
  ['caddy-integration', 'api_cert_file', '"/etc/letsencrypt/live/x/fullchain.pem"', 'ignored'],
  ['caddy-integration', 'api_key_file', '"/etc/letsencrypt/live/x/privkey.pem"', 'ignored'],
  ['caddy-integration', 'api_port', '"3000"', 'ignored'],
  ['pushover', 'api_token', "'abc123'", 'ignored'],
  ['pushover', 'user_key', "'user123'", 'ignored'],
  ['smtp', 'server', "'smtp.example.com:2525'", 'ignored'],
  ['smtp', 'sender_email', "'rport@gmail.com'", 'ignored'],
  ['smtp', 'auth_username', "'john.doe'", 'ignored'],
  ['smtp', 'auth_password', "'secret'", 'ignored'],
  ['smtp', 'secure', 'false', 'ignored'],
  ['notifications', 'notification_script_dir', '"/usr/local/lib/rport/notification_scripts"', 'ignored'],
  ['notifications', 'log_storage_duration', '"7d"', 'ignored'],
  ['notifications', 'cleanup_interval', '"1d"', 'ignored'],
  ['monitoring', 'enabled', 'true', 'ignored'],
  ['monitoring', 'data_storage_duration', '"7d"', 'ignored'],
  ['plus-plugin', 'plugin_path', '"/usr/local/lib/rport/rport-plus.so"', 'ignored'],
  ['plus-license', 'id', '"<your-license-id>"', 'ignored'],
  ['plus-license', 'key', '"<your-license-key>"', 'ignored'],
  ['plus-license', 'proxy_url', '"http://user:pass@proxy.example.com:8080"', 'ignored'],
  ...[
    'provider',
    'authorize_url',
    'redirect_uri',
    'token_url',
    'client_id',
    'client_secret',
    'device_client_id',
    'device_authorize_url',
    'device_client_secret',
    'required_organization',
    'required_group_id',
    'permitted_user_match',
  ].map((k): Row<ServerConfig> => ['plus-oauth', k, '"x"', 'ignored']),
  ['plus-oauth', 'permitted_user_list', 'true', 'ignored'],
];

/** The base each row is added to: what the command needs to start at all. */
const CLIENT_BASE: Record<string, string> = { client: 'server = "127.0.0.1:8080"\nauth = "c:p"' };
// RPort too refuses an API without authentication.
const SERVER_BASE: Record<string, string> = { server: 'auth = "c:p"', api: 'auth = "admin:foobaz"' };

function fileWith(dir: string, base: Record<string, string>, rows: Array<Row<unknown>>): string {
  const sections = new Map<string, string[]>();
  for (const [s, text] of Object.entries(base)) sections.set(s, [text]);
  for (const [s, k, v] of rows) {
    const lines = sections.get(s) ?? [];
    // A row replaces the base's line for the same key.
    sections.set(s, [
      ...lines.map((l) =>
        l
          .split('\n')
          .filter((x) => !x.startsWith(`${k} =`))
          .join('\n'),
      ),
      `${k} = ${v}`,
    ]);
  }
  return writeFile(
    dir,
    `f${Math.random().toString(36).slice(2)}.conf`,
    [...sections].map(([s, l]) => `[${s}]\n${l.join('\n')}\n`).join('\n'),
  );
}

function check<C>(
  dir: string,
  rows: Array<Row<C>>,
  base: Record<string, string>,
  load: (file: string) => Config,
  build: (c: Config) => C,
): void {
  for (const row of rows) {
    const [section, key, value, expect] = row;
    const config = load(fileWith(dir, base, [row as Row<unknown>]));
    if (typeof expect === 'object') {
      assert.throws(
        () => build(config),
        (e) => e instanceof ConfigError && expect.refused.test(e.message),
      );
      continue;
    }
    const built = build(config);
    if (expect === 'ignored') {
      assert.ok(
        config.ignored.includes(`[${section}] ${key}`) || config.ignored.includes(`[${section}]`),
        `[${section}] ${key} = ${value} named as not implemented: ${config.ignored}`,
      );
    } else {
      assert.deepEqual(config.ignored, [], `[${section}] ${key} is implemented`);
      expect(built);
    }
  }
}

const loadClient = (f: string) => loadConfig(CLIENT_KEYS, f, new Map(), RPORT_CLIENT_NAMES);
const loadServer = (f: string) => loadConfig(SERVER_KEYS, f, new Map(), RPORT_SERVER_NAMES);

test("every key of RPort's rport.example.conf loads with RPort's meaning or is named as not implemented", (t) => {
  check(tmpDir(t), CLIENT_ROWS, CLIENT_BASE, loadClient, clientConfig);
  // All of them at once, as a user's file holds them (the example's id and use_system_id both set: id wins).
  const all = loadClient(fileWith(tmpDir(t), CLIENT_BASE, CLIENT_ROWS as Array<Row<unknown>>));
  assert.equal(clientConfig(all).id, '5616a70e-81a0-4eec-bab3-0861e3c88334');
  assert.deepEqual(all.ignored, [
    '[client] attributes_file_path',
    '[client] allow_root',
    '[client] updates_interval',
    '[client] bind_interface',
    '[client] ip_api_url',
    '[client] ip_refresh_min',
    '[monitoring]',
    '[file-reception]',
  ]);
});

test("every key of RPort's rportd.example.conf loads with RPort's meaning or is named as not implemented", (t) => {
  check(tmpDir(t), SERVER_ROWS, SERVER_BASE, loadServer, serverConfig);
  const loadable = SERVER_ROWS.filter((r) => typeof r[3] !== 'object');
  const all = loadServer(fileWith(tmpDir(t), SERVER_BASE, loadable as Array<Row<unknown>>));
  assert.equal(serverConfig(all).api.address?.port, 3000);
});

test("RPort's defaults: API off, data_dir /var/lib/rport, disconnected clients kept, machine id as client id, host name as name", (t) => {
  const dir = tmpDir(t);
  const s = serverConfig(loadServer(writeFile(dir, 'd.conf', '[server]\nauth = "c:p"\n')));
  assert.deepEqual([s.api.address, s.dataDir, s.keepDisconnectedMs], [undefined, '/var/lib/rport', undefined]);
  const purging = serverConfig(
    loadServer(
      writeFile(
        dir,
        'p.conf',
        '[server]\nauth = "c:p"\npurge_disconnected_clients = true\nkeep_disconnected_clients = "2h"\n',
      ),
    ),
  );
  assert.equal(purging.keepDisconnectedMs, 7_200_000);
  assert.throws(
    () =>
      serverConfig(
        loadServer(
          writeFile(
            dir,
            'q.conf',
            '[server]\nauth = "c:p"\npurge_disconnected_clients = true\nkeep_disconnected_clients = "169h"\n',
          ),
        ),
      ),
    (e: Error) =>
      e instanceof ConfigError && /keep_disconnected_clients = "169h" is above RPort's maximum of 168h/.test(e.message),
  );
  const c = clientConfig(loadClient(writeFile(dir, 'c.conf', '[client]\nserver = "h"\nauth = "c:p"\n')));
  assert.deepEqual([c.id, c.name, c.dataDir], [machineId(), hostname(), '/var/lib/rport']);
  assert.equal(machineId(), readFileSync('/etc/machine-id', 'utf8').trim(), 'the machine id as it is, not a hash');
  const bare = clientConfig(
    loadClient(
      writeFile(dir, 'b.conf', '[client]\nserver = "h"\nauth = "c:p"\nuse_system_id = false\nuse_hostname = false\n'),
    ),
  );
  assert.deepEqual([bare.id, bare.name], ['', ''], 'no id: the server assigns one, as RPort');
  assert.equal(c.headers['User-Agent'], `rport ${VERSION}`);
});

test('RPORT_AUTH and RPORT_FINGERPRINT stand in for [client] auth and fingerprint when the file and the flags do not set them', (t) => {
  const dir = tmpDir(t);
  Object.assign(process.env, { RPORT_AUTH: 'envid:envpw', RPORT_FINGERPRINT: 'SHA256:fromTheEnvironment0' });
  t.after(() => {
    delete process.env.RPORT_AUTH;
    delete process.env.RPORT_FINGERPRINT;
  });
  const fromEnv = clientConfig(loadClient(writeFile(dir, 'e.conf', '[client]\nserver = "h"\nid = "x"\n')));
  assert.deepEqual(
    [fromEnv.authId, fromEnv.password, fromEnv.fingerprint],
    ['envid', 'envpw', 'SHA256:fromTheEnvironment0'],
  );
  const fileWins = clientConfig(
    loadClient(
      writeFile(
        dir,
        'f.conf',
        '[client]\nserver = "h"\nid = "x"\nauth = "c:p"\nfingerprint = "SHA256:fromTheFile000000"\n',
      ),
    ),
  );
  assert.deepEqual([fileWins.authId, fileWins.fingerprint], ['c', 'SHA256:fromTheFile000000']);
  process.env.RPORT_AUTH = 'no-password';
  assert.throws(() => clientConfig(loadClient(writeFile(dir, 'g.conf', '[client]\nserver = "h"\nid = "x"\n'))), {
    message: 'the environment variable RPORT_AUTH is not in the form "id:password" (it stands in for [client] auth)',
  });
});

test("server addresses in RPort's forms: default ports, http(s) schemes; socks5 proxies", (t) => {
  const cases: Array<[string, string]> = [
    ['host:80', 'ws://host:80/'],
    ['127.0.0.1:80', 'ws://127.0.0.1:80/'],
    ['rport.example.com', 'ws://rport.example.com:80/'],
    ['http://rport.example.com', 'ws://rport.example.com:80/'],
    ['https://rport.example.com', 'wss://rport.example.com:443/'],
    ['wss://h:443', 'wss://h:443/'],
    ['ws://h:8080/path', 'ws://h:8080/path'],
    ['[::1]:80', 'ws://[::1]:80/'],
    ['https://h:80', 'wss://h:80/'],
  ];
  for (const [text, href] of cases) assert.equal(parseServerUrl(text)?.href, href, text);
  const dir = tmpDir(t);
  const proxy = (p: string) =>
    clientConfig(
      loadClient(writeFile(dir, 'p.conf', `[client]\nserver = "h"\nauth = "c:p"\nid = "x"\nproxy = "${p}"\n`)),
    ).proxy?.href;
  assert.equal(proxy('socks5://u:p@127.0.0.1:1080'), 'socks5://u:p@127.0.0.1:1080');
  assert.equal(proxy('http://proxy:80'), 'http://proxy/');
  assert.throws(
    () => proxy('https://proxy:443'),
    /\[client\] proxy = "https:\/\/proxy:443" is an https:\/\/ proxy, which neither RPort nor rport supports: use http:\/\/ or socks5:\/\//,
  );
});

test('the documented set matches the tables: every row is a documented name, and every documented name has a row', () => {
  for (const [names, rows] of [
    [RPORT_CLIENT_NAMES, CLIENT_ROWS],
    [RPORT_SERVER_NAMES, SERVER_ROWS],
  ] as const) {
    const fromRows = new Set(rows.map(([s, k]) => `${s}.${k}`));
    for (const [s, keys] of Object.entries(names)) {
      if (keys === '*') continue;
      // The few struct spellings beside the example's (labels, pm_kerneltasks_enabled, ...) have no example value.
      const missing = keys.filter(
        (k) =>
          !fromRows.has(`${s}.${k}`) && !['labels', 'pm_kerneltasks_enabled', 'pm_max_number_processes'].includes(k),
      );
      assert.deepEqual(missing, [], `[${s}] keys without a row`);
    }
  }
});
