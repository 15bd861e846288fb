import { execFile, spawn, type ChildProcess } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmdirSync,
  rmSync,
  statfsSync,
  writeFileSync,
  chmodSync,
} from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
/** Where Debian's systemd package puts the manager. */
export const SYSTEMD_PATHS = ['/lib/systemd/systemd', '/usr/lib/systemd/systemd'];
/** Looked up when asked: the bench may install systemd after this module is loaded. */
const systemdPath = (): string | undefined => SYSTEMD_PATHS.find((p) => existsSync(p));
/** Other programs the harness runs, each with its Debian package. */
export const HARNESS_TOOLS: Record<string, string> = {
  '/usr/bin/unshare': 'util-linux',
  '/usr/bin/setsid': 'util-linux',
  '/usr/bin/systemctl': 'systemd',
};

/** Why a real systemd cannot run here, or undefined when it can. */
export function systemdUnavailable(): string | undefined {
  if (process.getuid?.() !== 0)
    return 'needs root (a private mount namespace and a cgroup of its own for systemd --user)';
  if (!systemdPath()) return 'systemd is not installed';
  for (const tool of Object.keys(HARNESS_TOOLS)) if (!existsSync(tool)) return `${tool} is missing`;
  return undefined;
}

/** cgroup folders for the manager: one in the unified hierarchy, or the named systemd one on cgroup v1. */
function cgroupDirs(name: string): string[] {
  const CGROUP2_MAGIC = 0x63677270;
  if (statfsSync('/sys/fs/cgroup').type === CGROUP2_MAGIC) return [`/sys/fs/cgroup/${name}`];
  return ['/sys/fs/cgroup/systemd', '/sys/fs/cgroup/unified'].filter((d) => existsSync(d)).map((d) => `${d}/${name}`);
}

function removeTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) removeTree(join(dir, e.name));
  try {
    rmdirSync(dir);
  } catch {
    // still populated; the kernel frees it once its processes are gone
  }
}

/**
 * The machine's own systemd as a real service manager (`systemd --user`, not PID 1) in a private mount
 * namespace: a tmpfs /run holding /run/systemd/system (it refuses to start without one), unit files only
 * from this harness's folder, and a cgroup subtree of its own. The rest of the file system is shared, so
 * services see the project and the test's files. Running as root, it switches to a unit's User= as the
 * system manager does. A user manager puts StateDirectory= and LogsDirectory= (log/) under
 * $XDG_CONFIG_HOME: `configHome` '/var/lib' makes StateDirectory= the system manager's /var/lib/NAME.
 * Its folder (with the notify socket) is in `parent`, /var/tmp unless said: a unit with PrivateTmp=yes
 * sees another /var/tmp, so a test of one puts it where the unit still sees it.
 */
export class UserSystemd {
  readonly env: NodeJS.ProcessEnv;
  private constructor(
    readonly dir: string,
    private readonly manager: ChildProcess,
    private readonly cgroups: string[],
  ) {
    const { DBUS_SESSION_BUS_ADDRESS: _d, NOTIFY_SOCKET: _n, ...rest } = process.env;
    this.env = { ...rest, XDG_RUNTIME_DIR: join(dir, 'runtime') };
  }

  /** `onCleanup` registers the manager's shutdown (a test's cleanup, or a benchmark's). */
  static async start(
    onCleanup: (fn: () => Promise<void>) => void,
    opts: { configHome?: string; parent?: string } = {},
  ): Promise<UserSystemd> {
    const dir = mkdtempSync(join(opts.parent ?? '/var/tmp', 'rport-systemd-'));
    for (const d of ['units', 'runtime', 'home', 'logs']) mkdirSync(join(dir, d));
    chmodSync(join(dir, 'runtime'), 0o700);
    for (const u of ['exit.target', 'systemd-exit.service', 'shutdown.target'])
      copyFileSync(`/usr/lib/systemd/user/${u}`, join(dir, 'units', u));
    writeFileSync(
      join(dir, 'units', 'harness.target'),
      '[Unit]\nDescription=test harness target\nDefaultDependencies=no\n',
    );
    const cgroups = cgroupDirs(`rport-test-${process.pid}-${Date.now()}`);
    for (const c of cgroups) mkdirSync(c, { recursive: true });
    const script = `set -e
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/systemd/system
for d in ${cgroups.join(' ')}; do echo $$ > $d/cgroup.procs; done
export HOME="$0/home" XDG_CONFIG_HOME="${opts.configHome ?? '$0/home/.config'}" XDG_DATA_HOME="$0/home/.local/share" XDG_STATE_HOME="$0/home/.local/state" XDG_CACHE_HOME="$0/home/.cache" SYSTEMD_UNIT_PATH="$0/units"
exec ${systemdPath()} --user --unit=harness.target`;
    const manager = spawn(
      'setsid',
      ['unshare', '--mount', '--propagation', 'private', '--', 'bash', '-c', script, dir],
      {
        stdio: 'ignore',
        env: { ...process.env, XDG_RUNTIME_DIR: join(dir, 'runtime'), NOTIFY_SOCKET: '' },
      },
    );
    const sd = new UserSystemd(dir, manager, cgroups);
    onCleanup(() => sd.stop());
    const end = Date.now() + 10_000;
    while ((await sd.show('', 'SystemState').catch(() => '')) !== 'running') {
      if (Date.now() > end) throw new Error('systemd --user did not come up within 10s');
      await new Promise((r) => setTimeout(r, 100));
    }
    return sd;
  }

  async systemctl(...args: string[]): Promise<string> {
    const { stdout } = await run('systemctl', ['--user', ...args], { env: this.env, timeout: 10_000 });
    return stdout.trim();
  }

  /** One property of a unit (or of the manager, for unit ''). */
  show(unit: string, prop: string): Promise<string> {
    return this.systemctl('show', '-p', prop, '--value', ...(unit ? [unit] : []));
  }

  writeUnit(name: string, text: string): void {
    writeFileSync(join(this.dir, 'units', name), text);
  }

  async stop(): Promise<void> {
    await this.systemctl('exit').catch(() => undefined);
    const gone = new Promise<void>((r) =>
      this.manager.exitCode !== null ? r() : this.manager.once('exit', () => r()),
    );
    const timer = setTimeout(() => this.manager.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(timer);
    for (const c of this.cgroups) removeTree(c);
    // Nothing left behind in /var/tmp.
    rmSync(this.dir, { recursive: true, force: true });
  }
}
