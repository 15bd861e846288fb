// What client and server say to each other. SSH runs inside a WebSocket with this subprotocol; after auth
// the client opens one session channel with the control subsystem, which carries JSON requests both ways.

export const WS_SUBPROTOCOL = 'rport-v1';
export const CONTROL_SUBSYSTEM = 'rport-control@rport';
/**
 * The auth id the client will log in with, sent with the WebSocket upgrade only so that a banned id can be
 * told so in plain words (HTTP 403) instead of a bare SSH auth failure; SSH auth decides, not this header.
 */
export const AUTH_ID_HEADER = 'x-rport-auth-id';

/** The client's first request on the control channel. */
export interface ConnectRequest {
  id: string;
  name: string;
  tags: string[];
  hostname: string;
  os: string;
  arch: string;
  version: string;
  pid: number;
  /** When the client process started (ms since the epoch); with pid it tells a restart from a reconnect. */
  processStart: number;
  /** [client] remotes: tunnels the server opens for this client on connect. */
  remotes: string[];
  /** What the client's supervision looks like; also sent with every ping (last_state changes). */
  watchdog?: WatchdogFacts;
}

/** The client's watchdog, as the server shows it per client. */
export interface WatchdogFacts {
  integration: boolean;
  /** systemd's WatchdogSec for this client, when systemd supervises it. */
  systemd_watchdog_sec: number | null;
  /** The longest gap between two watchdog events, from its config. */
  heartbeat_budget_sec: number;
  last_state: string;
}

/**
 * Server to client: get ready to carry a tunnel. The client checks tunnel_allowed, then asks for the
 * SSH forwarding binding (bind address = tunnel id, port TUNNEL_BIND_PORT) under which the server opens
 * one forwarded-tcpip channel per connection.
 */
export interface TunnelOpenRequest {
  id: string;
  /** host:port the client dials for each connection. */
  remote: string;
}

export const TUNNEL_BIND_PORT = 1;

export interface ConnectReply {
  sessionId: string;
}

export const METHOD = {
  connect: 'connect',
  /** Both sides; answered with {now} (the answering clock). The client's carry last_rtt_ms and its watchdog facts. */
  ping: 'ping',
  tunnelOpen: 'tunnel.open',
  tunnelClose: 'tunnel.close',
  /** Server to client: run a command or script (JobRunRequest), answered {pid} once it started, or refused. */
  jobRun: 'job.run',
  /** Client to server: live output of running jobs (JobOutput), paced by the client. */
  jobOutput: 'job.output',
  /** Client to server: one piece of a finished job's captured output (JobPart), in order. */
  jobPart: 'job.part',
  /** Client to server: a job ended (JobDone), after its parts; re-sent after a reconnect until answered. */
  jobDone: 'job.done',
} as const;

/** The longest timeout_sec of a job, at both ends. */
export const MAX_JOB_TIMEOUT_SEC = 7 * 86_400;

/** Server to client: a command (run by the interpreter) or a script (written to a file and run). */
export interface JobRunRequest {
  jid: string;
  /** The command line, or the script's text when is_script. */
  command: string;
  is_script: boolean;
  /** sh, bash, cmd, powershell, an [interpreter-aliases] name, or '' for the system's default. */
  interpreter: string;
  cwd: string;
  timeout_sec: number;
}

export interface JobRunReply {
  pid: number;
  /** ms since the epoch, the client's clock. */
  started_at: number;
}

/** Output since the last message, of every running job at once (text, UTF-8 decoded). */
export interface JobOutput {
  jobs: Array<{ jid: string; stdout: string; stderr: string }>;
}

/** A piece of the captured output: parts of one job are numbered from 0; part 0 starts the result afresh. */
export interface JobPart {
  jid: string;
  seq: number;
  stream: 'stdout' | 'stderr';
  /** base64 of the bytes. */
  data: string;
}

export interface JobDone {
  jid: string;
  /** How many parts came before this. */
  parts: number;
  status: 'successful' | 'failed';
  exit_code: number | null;
  error: string;
  started_at: number;
  finished_at: number;
}

/**
 * RPort's protocol (openrport 0.9): SSH inside the WebSocket with these identification lines, password auth
 * (user = auth id), then SSH global requests carrying JSON both ways and one channel per tunnel connection.
 */
export const RPORT_IDENT = { client: 'SSH-rport-v1-client', server: 'SSH-rport-v1-server' } as const;

/** RPort's global requests (their JSON uses Go's field names). */
export const RPORT_REQUEST = {
  /** Client to server, first: the ConnectionRequest; answered with the JSON remotes, or false and the reason. */
  connect: 'new_connection',
  /** Both ways; an empty answer. */
  ping: 'ping',
  /** Server to client, no answer: {ServerVersion, MonitoringVersion, IPAddressesVersion}. */
  capabilities: 'put_capabilities',
  checkPort: 'check_port',
  /** Server to client: {Remote} answered {IsAllowed}. */
  checkTunnelAllowed: 'check_tunnel_allowed',
  /** Server to client: the Job; answered {Pid, StartedAt}, or false and the reason. */
  runCmd: 'run_cmd',
  /** Client to server, no answer: the Job with its status and result. */
  cmdResult: 'cmd_result',
  updateAttributes: 'update_client_metadata',
  refreshUpdates: 'refresh_updates_status',
  updatesStatus: 'updates_status',
  saveMeasurement: 'save_measurement',
  ipAddresses: 'ip_addresses',
} as const;

/** RPort's channel types: one `rport` channel per tunnel connection (extra data host:port), and a job's live output. */
export const RPORT_CHANNEL = { tunnel: 'rport', stdout: 'stdout', stderr: 'stderr' } as const;

/** The words RPort's client looks for in a refused connection request's reason. */
export const RPORT_REFUSAL = {
  /** The client waits a while, then connects again. */
  reconnect: 'please reconnect',
  /** The client closes and retries with its backoff. */
  alreadyConnected: 'client is already connected:',
} as const;

/** RPort's ConnectionRequest as its client sends it (the fields rportd uses). */
export interface RportConnectionRequest {
  ID: string;
  Name: string;
  SessionID: string;
  OS: string;
  OSFullName?: string;
  OSArch: string;
  OSKernel?: string;
  Version: string;
  Hostname: string;
  Tags: string[] | null;
  Labels?: Record<string, string> | null;
  IPv4?: string[] | null;
  IPv6?: string[] | null;
  Remotes: Array<{ lhost?: string; lport?: string; rhost?: string; rport?: string; protocol?: string }> | null;
}

/** RPort's Job, as run_cmd sends it and cmd_result returns it. */
export interface RportJob {
  jid: string;
  status?: string;
  client_id?: string;
  client_name?: string;
  command: string;
  cwd: string;
  interpreter: string;
  pid?: number | null;
  started_at?: string;
  finished_at?: string | null;
  created_by?: string;
  timeout_sec: number;
  error?: string;
  result?: { stdout?: string; stderr?: string; summary?: string } | null;
  is_sudo?: boolean;
  is_script: boolean;
  stream_result?: boolean;
}
