/**
 * The sections and keys that RPort documents in its example files (rport.example.conf and
 * rportd.example.conf of openrport/openrport), names only, plus the few names its config structs read under
 * another spelling. A name here that rport does not implement is accepted and named in the start-up info
 * line; a name neither here nor in the key tables is a mistake (exit 2). '*': a free-form section.
 */
export type DocumentedNames = Readonly<Record<string, readonly string[] | '*'>>;

export const RPORT_CLIENT_NAMES: DocumentedNames = {
  client: [
    'server',
    'fallback_servers',
    'server_switchback_interval',
    'fingerprint',
    'auth',
    'proxy',
    'use_system_id',
    'id',
    'use_hostname',
    'name',
    'attributes_file_path',
    'tags',
    'labels',
    'remotes',
    'tunnel_allowed',
    'allow_root',
    'updates_interval',
    'data_dir',
    'bind_interface',
    'ip_api_url',
    'ip_refresh_min',
  ],
  connection: [
    'keep_alive',
    'keep_alive_timeout',
    'max_retry_count',
    'max_retry_interval',
    'watchdog_integration',
    'hostname',
    'headers',
  ],
  logging: ['log_file', 'log_level'],
  'remote-commands': ['enabled', 'send_back_limit', 'allow', 'deny', 'order'],
  'remote-scripts': ['enabled'],
  monitoring: [
    'enabled',
    'interval',
    'fs_type_include',
    'fs_path_exclude',
    'fs_path_exclude_recurse',
    'fs_identify_mountpoints_by_device',
    'pm_enabled',
    'pm_enable_kerneltask_monitoring',
    'pm_kerneltasks_enabled',
    'pm_max_number_monitored_processes',
    'pm_max_number_processes',
    'net_lan',
    'net_wan',
  ],
  'interpreter-aliases': '*',
  'file-reception': ['enabled', 'protected'],
};

export const RPORT_SERVER_NAMES: DocumentedNames = {
  server: [
    'address',
    'url',
    'tunnel_host',
    'pairing_url',
    'key_seed',
    'auth',
    'auth_file',
    'auth_table',
    'auth_multiuse_creds',
    'equate_clientauthid_clientid',
    'auth_write',
    'proxy',
    'used_ports',
    'excluded_ports',
    'data_dir',
    'sqlite_wal',
    'max_concurrent_ssh_handshakes',
    'purge_disconnected_clients',
    'keep_disconnected_clients',
    'purge_disconnected_clients_interval',
    'check_clients_connection_interval',
    'check_clients_connection_timeout',
    'max_request_bytes_client',
    'run_remote_cmd_timeout_sec',
    'check_port_timeout',
    'allow_root',
    'client_login_wait',
    'max_failed_login',
    'ban_time',
    'tunnel_proxy_cert_file',
    'tunnel_proxy_key_file',
    'tunnel_enable_acme',
    'tunnel_cors',
    'novnc_root',
    'guacd_address',
    'jobs_max_results',
    'tls_min',
    'acme_http_port',
  ],
  logging: ['log_file', 'log_level'],
  api: [
    'address',
    'base_url',
    'enable_acme',
    'auth',
    'auth_file',
    'auth_user_table',
    'auth_group_table',
    'auth_group_details_table',
    'auth_header',
    'user_header',
    'create_missing_users',
    'default_user_group',
    'two_fa_token_delivery',
    'two_fa_token_ttl_seconds',
    'two_fa_send_timeout',
    'two_fa_send_to_type',
    'two_fa_send_to_regex',
    'totp_enabled',
    'totp_login_session_ttl',
    'totp_account_name',
    'jwt_secret',
    'max_token_lifetime',
    'doc_root',
    'cert_file',
    'key_file',
    'access_log_file',
    'user_login_wait',
    'max_failed_login',
    'ban_time',
    'enable_audit_log',
    'use_ip_obfuscation',
    'audit_log_rotation',
    'password_min_length',
    'password_zxcvbn_minscore',
    'tls_min',
    'max_request_bytes',
    'max_filepush_size',
    'cors',
    'enable_ws_test_endpoints',
  ],
  database: ['db_type', 'db_host', 'db_user', 'db_password', 'db_name'],
  'caddy-integration': [
    'caddy',
    'address',
    'subdomain_prefix',
    'cert_file',
    'key_file',
    'api_hostname',
    'api_cert_file',
    'api_key_file',
    'api_port',
  ],
  pushover: ['api_token', 'user_key'],
  smtp: ['server', 'sender_email', 'auth_username', 'auth_password', 'secure'],
  notifications: ['notification_script_dir', 'log_storage_duration', 'cleanup_interval'],
  monitoring: ['enabled', 'data_storage_duration'],
  'plus-plugin': ['plugin_path'],
  'plus-license': ['id', 'key', 'proxy_url'],
  'plus-oauth': [
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
    'permitted_user_list',
    'permitted_user_match',
  ],
};

/** Edit distance (insertions, deletions, substitutions, and swaps of neighbours: "keep_alvie"). */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The known name closest to `name`, when it is close enough to be the likely intent. */
export function nearest(name: string, known: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const dd = distance(name.toLowerCase(), k.toLowerCase());
    if (dd < bestD) [best, bestD] = [k, dd];
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}
