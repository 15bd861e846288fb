import { BlockList, isIP } from 'node:net';
import type { TunnelPolicy } from '../../config/server-config.js';
import { formatHostPort, isAnyAddress, isLoopback } from '../../shared/host-port.js';
import { TunnelError, type Endpoint, type Tunnel } from './tunnel.js';

/**
 * Where a tunnel that named no address ended up, and what that means for who may reach it: said at its
 * creation, since a new install keeps such tunnels on loopback where RPort published them on 0.0.0.0.
 */
export function defaultBindNote(t: Pick<Tunnel, 'local' | 'acl'>): string {
  const at = formatHostPort(t.local);
  const why = `the request named no address and [server] tunnel_bind_addresses starts with ${t.local.host}`;
  if (isLoopback(t.local.host))
    return `listens on ${at}, on this machine only: ${why}; ask for local=0.0.0.0:PORT (with an acl) to reach it from other hosts`;
  if (isAnyAddress(t.local.host) && t.acl.length === 0)
    return `listens on ${at} for every network this server is on, with no acl: ${why} (RPort's default); add an acl to limit who may connect`;
  return `listens on ${at}: ${why}`;
}

/** What the configuration permits: bind addresses, used_ports minus excluded_ports, tunnels per client. */
export class TunnelRules {
  /** used_ports, held once: looked up by refusal(), walked in order by freePorts(). */
  private readonly ports: ReadonlySet<number>;
  private readonly bindAddresses = new BlockList();

  constructor(private readonly policy: TunnelPolicy) {
    this.ports = new Set(policy.ports);
    for (const a of policy.bindAddresses) this.bindAddresses.addAddress(a, isIP(a) === 6 ? 'ipv6' : 'ipv4');
  }

  /** The address of a tunnel whose request named none. */
  get defaultHost(): string {
    return this.policy.bindAddresses[0]!;
  }

  /** Why the configuration does not permit a tunnel at `local` for a client that has `count` already, as the API answers it; undefined if it does. */
  refusal(clientId: string, local: Endpoint, count: number): TunnelError | undefined {
    const p = this.policy;
    if (!isIP(local.host) || !this.bindAddresses.check(local.host, isIP(local.host) === 6 ? 'ipv6' : 'ipv4')) {
      return new TunnelError(
        'bind_address_not_allowed',
        `bind address ${local.host} is not in [server] tunnel_bind_addresses (${p.bindAddresses.join(', ')})`,
      );
    }
    if (local.port && !this.ports.has(local.port)) {
      return new TunnelError(
        'port_not_allowed',
        `port ${local.port} is not in [server] used_ports (${p.usedPorts}) minus excluded_ports (${p.excludedPorts})`,
      );
    }
    if (count >= p.maxPerClient) {
      return new TunnelError(
        'too_many_tunnels',
        `client ${clientId} has ${count} tunnels, the most [server] max_tunnels_per_client allows`,
      );
    }
    return undefined;
  }

  /** The permitted ports not in `inUse`, in the configuration's order. */
  freePorts(inUse: Set<number>): number[] {
    return [...this.ports].filter((p) => !inUse.has(p));
  }
}
