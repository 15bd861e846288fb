import type { Logger } from '../log.js';
import { packageRequire } from '../runtime/package-require.js';

type Binding = { send(address: string, payload: Buffer): number };

function loadBinding(): Binding | string {
  try {
    // Where node-gyp put it at install time (Linux only); the single executables carry their own copy.
    return packageRequire('./build/Release/sd_notify.node') as Binding;
  } catch (err) {
    return (err as Error).message.split('\n')[0]!;
  }
}

/** systemd's watchdog settings for this process, read from WATCHDOG_USEC and WATCHDOG_PID. */
export function watchdogUsec(env: NodeJS.ProcessEnv, pid = process.pid): number | undefined {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isSafeInteger(usec) || usec <= 0) return undefined;
  if (env.WATCHDOG_PID && Number(env.WATCHDOG_PID) !== pid) return undefined;
  return usec;
}

/**
 * The sd_notify protocol: one datagram of KEY=VALUE lines to $NOTIFY_SOCKET (a path, or "@name" for an
 * abstract socket). Sent from this process itself: with NotifyAccess=main systemd drops datagrams from
 * any other process, so a helper like systemd-notify would not do.
 */
export class SdNotify {
  private readonly failures = new Set<number>();

  private constructor(
    readonly socket: string,
    private readonly binding: Binding,
    private readonly log: Logger,
  ) {}

  /**
   * Reads NOTIFY_SOCKET and removes it (with WATCHDOG_*) from the environment, so no child process can
   * send in our name. Logs at debug level whether it is used and why not.
   */
  static fromEnvironment(log: Logger): { notify: SdNotify | undefined; watchdogUsec: number | undefined } {
    const env = process.env;
    const socket = env.NOTIFY_SOCKET;
    const usec = watchdogUsec(env);
    delete env.NOTIFY_SOCKET;
    delete env.WATCHDOG_USEC;
    delete env.WATCHDOG_PID;
    if (!socket) {
      log.debug(
        'NOTIFY_SOCKET is not set: not using systemd watchdog integration (not started by systemd as Type=notify)',
      );
      return { notify: undefined, watchdogUsec: undefined };
    }
    if (!socket.startsWith('/') && !socket.startsWith('@')) {
      log.warn(
        `NOTIFY_SOCKET ${socket} is neither a path nor an abstract name (@...): not using systemd watchdog integration`,
      );
      return { notify: undefined, watchdogUsec: undefined };
    }
    const binding = loadBinding();
    if (typeof binding === 'string') {
      log.error(
        `NOTIFY_SOCKET ${socket} is set but the sd_notify add-on is not available (${binding}): run npm rebuild in the rport folder (single executables: put sd_notify.node beside it), or systemd will kill this service`,
      );
      return { notify: undefined, watchdogUsec: undefined };
    }
    log.debug(`Using NOTIFY_SOCKET ${socket} for systemd watchdog integration`);
    return { notify: new SdNotify(socket, binding, log), watchdogUsec: usec };
  }

  /** Sends one message; failures are logged once per errno and never thrown. */
  send(fields: Record<string, string>): boolean {
    const payload = Object.entries(fields)
      .map(([k, v]) => `${k}=${v.replace(/\n/g, ' ')}`)
      .join('\n');
    const rc = this.binding.send(this.socket, Buffer.from(payload));
    if (rc === 0) {
      this.failures.clear();
      return true;
    }
    if (!this.failures.has(rc)) {
      this.failures.add(rc);
      this.log.error(`sending to NOTIFY_SOCKET ${this.socket} failed (errno ${-rc}); systemd may restart this service`);
    }
    return false;
  }
}
