import { lookup } from 'node:dns/promises';
import type { EventEmitter } from 'node:events';
import { isIP, connect as netConnect, type Socket } from 'node:net';
import type ssh2 from 'ssh2';
import { formatHostPort, parseHostPort, type AddressRules, type HostPort } from '../shared/host-port.js';
import { errorMessage, type Logger } from '../log.js';
import { deadline, TimeoutError, withTimeout } from '../timeout.js';
import type { Control } from '../transport/control-channel.js';
import { pipeSocketChannel } from '../transport/pipe.js';
import {
  METHOD,
  RPORT_CHANNEL,
  RPORT_REQUEST,
  TUNNEL_BIND_PORT,
  type TunnelOpenRequest,
} from '../transport/protocol.js';

/** Bound on dialing a tunnel target; the server's caller sees the channel refused when it runs out. */
export const TARGET_DIAL_TIMEOUT_MS = 10_000;
/** Bound on resolving a target's name. */
const DNS_TIMEOUT_MS = 5000;

/** The addresses a target resolves to now, and those of them tunnel_allowed allows. */
interface Checked {
  addresses: string[];
  allowed: string[];
  /** "host:port", with the addresses when the host is a name. */
  shown: string;
}

function connectTo(host: string, port: number, ms: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = netConnect({ host, port, allowHalfOpen: true, noDelay: true });
    // The error names the whole bound, not what was left of it for this address.
    const d = deadline(ms, 'connect', () => sock.destroy(new TimeoutError('connect', TARGET_DIAL_TIMEOUT_MS)));
    sock.once('error', (err) => {
      d.cancel();
      reject(err);
    });
    sock.once('connect', () => {
      d.cancel();
      resolve(sock);
    });
  });
}

/**
 * The client's side of tunnels: it accepts a tunnel only if [client] tunnel_allowed allows its target,
 * then, for each connection the server forwards, resolves the target again, checks every address, and
 * dials only an address it checked (a name that resolves elsewhere later, as with DNS rebinding, gets
 * nowhere else), then pipes both ways.
 */
export class TunnelTargets {
  private readonly targets = new Map<string, HostPort>();

  constructor(
    private readonly allowed: AddressRules,
    private readonly log: Logger,
  ) {}

  /**
   * Serves one connection: its control requests and forwarded channels, or a stock RPort server's: it asks
   * check_tunnel_allowed first, then opens one `rport` channel per connection naming host:port, which is
   * checked and dialed as a forwarded one is.
   */
  attach(ssh: ssh2.Client, control: Control): void {
    this.targets.clear();
    control.handle(METHOD.tunnelOpen, (p) => this.open(ssh, p as TunnelOpenRequest));
    control.handle(METHOD.tunnelClose, (p) => {
      const id = String((p as { id?: unknown })?.id);
      if (this.targets.delete(id)) ssh.unforwardIn(id, TUNNEL_BIND_PORT);
      return {};
    });
    ssh.on('tcp connection', (info, accept, reject) => {
      const target = this.targets.get(info.destIP);
      if (!target) return reject();
      void this.dial(target, info.srcIP, accept, reject);
    });
    control.handle(RPORT_REQUEST.checkTunnelAllowed, async (p) => {
      const target = this.parse((p as { Remote?: unknown })?.Remote);
      const checked = await this.check(target);
      if (checked.allowed.length === 0)
        this.log.warn(`refused a tunnel to ${checked.shown}: not allowed by [client] tunnel_allowed`);
      return { IsAllowed: checked.allowed.length > 0 };
    });
    control.handle(RPORT_REQUEST.checkPort, (p) => this.checkPort(p));
    (ssh as unknown as EventEmitter).on(
      'channel',
      (type: string, data: Buffer | undefined, accept: () => ssh2.ClientChannel, reject: () => void) => {
        const target = type === RPORT_CHANNEL.tunnel ? parseHostPort(data?.toString('utf8') ?? '', '') : undefined;
        if (!target?.host) {
          this.log.warn(`refused a channel of type "${type.slice(0, 64)}" from the server: not a tunnel to host:port`);
          return reject();
        }
        void this.dial(target, 'the server', accept, reject);
      },
    );
  }

  private parse(remote: unknown): HostPort {
    const target = typeof remote === 'string' ? parseHostPort(remote, '') : undefined;
    if (!target?.host) throw new Error('tunnel request is malformed: remote must be host:port');
    return target;
  }

  /**
   * RPort's check_port (is the target listening?), for addresses tunnel_allowed allows only: the server
   * may not probe the client's network beyond what it may tunnel to. Its Timeout (Go nanoseconds) is capped.
   */
  private async checkPort(p: unknown): Promise<{ Open: boolean; ErrMsg: string }> {
    const r = (p ?? {}) as { HostPort?: unknown; Timeout?: unknown };
    const target = this.parse(r.HostPort);
    const ms = Math.min(
      TARGET_DIAL_TIMEOUT_MS,
      typeof r.Timeout === 'number' && r.Timeout > 0 ? r.Timeout / 1e6 : TARGET_DIAL_TIMEOUT_MS,
    );
    try {
      const checked = await this.check(target);
      if (checked.allowed.length === 0)
        return { Open: false, ErrMsg: `${checked.shown} is not allowed by the client's [client] tunnel_allowed` };
      (await connectTo(checked.allowed[0]!, target.port, ms)).destroy();
      return { Open: true, ErrMsg: '' };
    } catch (err) {
      return { Open: false, ErrMsg: errorMessage(err) };
    }
  }

  private async check(target: HostPort): Promise<Checked> {
    const addresses = isIP(target.host)
      ? [target.host]
      : (await withTimeout(lookup(target.host, { all: true }), DNS_TIMEOUT_MS, `DNS lookup of ${target.host}`)).map(
          (a) => a.address,
        );
    return {
      addresses,
      allowed: addresses.filter((ip) => this.allowed.allows(ip, target.port)),
      shown: `${formatHostPort(target)}${isIP(target.host) ? '' : ` (${addresses.join(', ')})`}`,
    };
  }

  private async open(ssh: ssh2.Client, req: TunnelOpenRequest): Promise<{ remote: string }> {
    const target = this.parse(req?.remote);
    if (typeof req.id !== 'string') throw new Error('tunnel request is malformed: id must be a string');
    const checked = await this.check(target);
    if (checked.allowed.length === 0) {
      this.log.warn(`refused a tunnel to ${checked.shown}: not allowed by [client] tunnel_allowed`);
      throw new Error(`tunnel to ${req.remote} is not allowed by the client's [client] tunnel_allowed`);
    }
    await new Promise<void>((resolve, reject) =>
      ssh.forwardIn(req.id, TUNNEL_BIND_PORT, (err) => (err ? reject(err) : resolve())),
    );
    this.targets.set(req.id, target);
    this.log.info(`tunnel ${req.id} to ${req.remote} ready`);
    return { remote: req.remote };
  }

  /** Resolves and checks the target anew, then tries its allowed addresses in turn; a refusal reaches the server as a refused channel. */
  private async dial(
    target: HostPort,
    from: string,
    accept: () => ssh2.ClientChannel,
    reject: () => void,
  ): Promise<void> {
    const until = Date.now() + TARGET_DIAL_TIMEOUT_MS;
    let sock: Socket | undefined;
    try {
      const checked = await this.check(target);
      if (checked.allowed.length === 0) {
        this.log.warn(
          `tunnel connection from ${from} to ${checked.shown} refused: not allowed by [client] tunnel_allowed`,
        );
        return reject();
      }
      for (const [i, ip] of checked.allowed.entries()) {
        try {
          sock = await connectTo(ip, target.port, until - Date.now());
          break;
        } catch (err) {
          if (i === checked.allowed.length - 1) throw err;
        }
      }
    } catch (err) {
      this.log.warn(`tunnel connection from ${from} to ${formatHostPort(target)} failed: ${errorMessage(err)}`);
      return reject();
    }
    pipeSocketChannel(sock!, accept());
  }
}
