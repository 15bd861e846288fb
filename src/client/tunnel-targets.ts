import { lookup } from 'node:dns/promises';
import { isIP, connect as netConnect } from 'node:net';
import type ssh2 from 'ssh2';
import { formatHostPort, parseHostPort, type AddressRules, type HostPort } from '../config/host-port.js';
import { errorMessage, type Logger } from '../log.js';
import { withTimeout } from '../timeout.js';
import type { ControlChannel } from '../transport/control-channel.js';
import { METHOD, TUNNEL_BIND_PORT, type TunnelOpenRequest } from '../transport/protocol.js';

/** Bound on dialing a tunnel target; the server's caller sees the channel refused when it runs out. */
export const TARGET_DIAL_TIMEOUT_MS = 10_000;

/**
 * The client's side of tunnels: it accepts a tunnel only if [client] tunnel_allowed allows its target,
 * then, for each connection the server forwards, dials the target and pipes both ways (stream pipes
 * give backpressure: a slow side pauses the other).
 */
export class TunnelTargets {
  private readonly targets = new Map<string, HostPort>();

  constructor(
    private readonly allowed: AddressRules,
    private readonly log: Logger,
  ) {}

  /** Serves one connection: its control requests and forwarded channels. */
  attach(ssh: ssh2.Client, control: ControlChannel): void {
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
      this.dial(target, info.srcIP, accept, reject);
    });
  }

  private async open(ssh: ssh2.Client, req: TunnelOpenRequest): Promise<{ remote: string }> {
    const target = typeof req?.remote === 'string' ? parseHostPort(req.remote, '') : undefined;
    if (!target || !target.host || typeof req.id !== 'string') throw new Error(`tunnel request is malformed: remote must be host:port`);
    const ip = isIP(target.host) ? target.host : (await withTimeout(lookup(target.host), 5000, `DNS lookup of ${target.host}`)).address;
    if (!this.allowed.allows(ip, target.port)) {
      this.log.warn(`refused a tunnel to ${req.remote}: not allowed by [client] tunnel_allowed`);
      throw new Error(`tunnel to ${req.remote} is not allowed by the client's [client] tunnel_allowed`);
    }
    await new Promise<void>((resolve, reject) => ssh.forwardIn(req.id, TUNNEL_BIND_PORT, (err) => (err ? reject(err) : resolve())));
    this.targets.set(req.id, target);
    this.log.info(`tunnel ${req.id} to ${req.remote} ready`);
    return { remote: req.remote };
  }

  private dial(target: HostPort, from: string, accept: () => ssh2.ClientChannel, reject: () => void): void {
    const sock = netConnect({ host: target.host, port: target.port, allowHalfOpen: true });
    sock.setNoDelay(true);
    const timer = setTimeout(() => sock.destroy(new Error(`connect timed out after ${TARGET_DIAL_TIMEOUT_MS / 1000}s`)), TARGET_DIAL_TIMEOUT_MS);
    sock.once('error', (err) => {
      clearTimeout(timer);
      this.log.warn(`tunnel connection from ${from} to ${formatHostPort(target)} failed: ${errorMessage(err)}`);
      reject();
    });
    sock.once('connect', () => {
      clearTimeout(timer);
      const channel = accept();
      sock.removeAllListeners('error');
      sock.on('error', () => channel.destroy());
      channel.on('error', () => sock.destroy());
      // Ending (not destroying) on close lets what is still buffered reach the target first.
      channel.on('close', () => {
        if (!sock.destroyed) sock.end();
      });
      sock.on('close', () => channel.close());
      sock.pipe(channel).pipe(sock);
    });
  }
}
