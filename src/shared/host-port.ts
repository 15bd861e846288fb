import { BlockList, isIP } from 'node:net';

export interface HostPort {
  host: string;
  port: number;
}

/** "host:port", "[v6]:port" or ":port" (host 0.0.0.0). */
export function parseHostPort(text: string, defaultHost = '0.0.0.0'): HostPort | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? (m[2] || defaultHost), port };
}

/** A peer's address as people write it: IPv4-mapped IPv6 ("::ffff:1.2.3.4") as plain IPv4. */
export function plainAddress(ip: string | undefined): string {
  return (ip ?? '').replace(/^::ffff:/, '');
}

/** Whether a host reaches this machine only: a loopback address or localhost. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

/** Whether a listening host means every address of the machine (0.0.0.0, ::, or none). */
export function isAnyAddress(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '';
}

export function formatHostPort(a: HostPort): string {
  return `${isIP(a.host) === 6 ? `[${a.host}]` : a.host}:${a.port}`;
}

/** A tunnel as RPort writes it in [client] remotes: "3389", "2222:22", "8080:10.0.0.5:80", "0.0.0.0:8080:127.0.0.1:80". */
export interface RemoteSpec {
  /** Where the server listens; port 0: a free port from used_ports; host "": the server's default. */
  local: HostPort;
  /** What the client dials. */
  remote: HostPort;
}

export function parseRemoteSpec(text: string): RemoteSpec | undefined {
  const parts =
    text
      .trim()
      .replace(/^R:/, '')
      .match(/\[[^\]]+\]|[^:]+/g) ?? [];
  const host = (s: string) => s.replace(/^\[(.*)\]$/, '$1');
  const port = (s: string | undefined) =>
    s !== undefined && /^\d{1,5}$/.test(s) && Number(s) <= 65535 ? Number(s) : undefined;
  let local: HostPort;
  let remote: HostPort;
  switch (parts.length) {
    case 1:
      local = { host: '', port: 0 };
      remote = { host: '127.0.0.1', port: port(parts[0])! };
      break;
    case 2:
      local = { host: '', port: port(parts[0])! };
      remote = { host: '127.0.0.1', port: port(parts[1])! };
      break;
    case 3:
      local = { host: '', port: port(parts[0])! };
      remote = { host: host(parts[1]!), port: port(parts[2])! };
      break;
    case 4:
      local = { host: host(parts[0]!), port: port(parts[1])! };
      remote = { host: host(parts[2]!), port: port(parts[3])! };
      break;
    default:
      return undefined;
  }
  if (local.port === undefined || !remote.port || !remote.host) return undefined;
  return { local, remote };
}

/**
 * Address rules in RPort's forms: "10.0.0.0/8", "192.168.1.5", "10.0.0.0/8:22", ":3389". An empty list
 * allows everything (RPort's default for tunnel_allowed).
 */
export class AddressRules {
  private constructor(private readonly rules: Array<{ net: BlockList | undefined; port: number | undefined }>) {}

  /** Throws an Error naming the first rule that cannot be read. */
  static parse(list: string[]): AddressRules {
    return new AddressRules(
      list.map((text) => {
        const m = /^(.*?)(?::(\d{1,5}))?$/.exec(text.trim().replace(/^\[(.*)\](?=:\d+$)/, '$1'))!;
        let addr: string = m[1]!;
        let port: string | undefined = m[2];
        // A bare IPv6 address has colons of its own; only "[v6]:port" or "v4:port" carry a port.
        if (isIP(text.trim()) === 6 || /^[0-9a-f:]+\/\d+$/i.test(text.trim())) [addr, port] = [text.trim(), undefined];
        if (!addr) return { net: undefined, port: Number(port) };
        const [ip, bits] = addr.split('/');
        const family = isIP(ip!);
        const prefix = bits === undefined ? (family === 6 ? 128 : 32) : Number(bits);
        if (!family || !(prefix >= 0 && prefix <= (family === 6 ? 128 : 32)))
          throw new Error(`"${text}" is not an address, CIDR, CIDR:port or :port`);
        const net = new BlockList();
        net.addSubnet(ip!, prefix, family === 6 ? 'ipv6' : 'ipv4');
        return { net, port: port === undefined ? undefined : Number(port) };
      }),
    );
  }

  allows(ip: string, port?: number): boolean {
    if (this.rules.length === 0) return true;
    const family = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
    const v4 = plainAddress(ip);
    return this.rules.some(
      (r) => (r.port === undefined || r.port === port) && (!r.net || r.net.check(v4, isIP(v4) === 4 ? 'ipv4' : family)),
    );
  }
}
