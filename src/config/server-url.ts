/** Where a client connects: RPort accepts host[:port] (plain ws://), ws://..., wss://..., http://... and https://... */
export interface ServerUrl {
  secure: boolean;
  host: string;
  port: number;
  /** The WebSocket URL, e.g. ws://host:8080/ */
  href: string;
  /** host:port as state.json messages print it. */
  hostPort: string;
}

export function parseServerUrl(text: string): ServerUrl | undefined {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `ws://${text}`;
  let u: URL;
  try {
    u = new URL(withScheme);
  } catch {
    return undefined;
  }
  // RPort configs often carry http(s):// for the same server.
  const scheme = u.protocol === 'http:' ? 'ws:' : u.protocol === 'https:' ? 'wss:' : u.protocol;
  if (scheme !== 'ws:' && scheme !== 'wss:') return undefined;
  const secure = scheme === 'wss:';
  if (!u.hostname) return undefined;
  // As RPort: no port means 80 (443 for wss/https). URL leaves u.port empty for a scheme's own default port.
  const port = u.port ? Number(u.port) : secure ? 443 : 80;
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  const hostPort = `${u.hostname}:${port}`;
  return { secure, host, port, hostPort, href: `${scheme}//${hostPort}${u.pathname}${u.search}` };
}
