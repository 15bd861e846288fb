import { packageRequire } from '../runtime/package-require.js';
import { isSingleExecutable } from '../runtime/sea.js';

/** The largest channel window patches/ssh2+1.17.0.patch grows to; unpatched ssh2 keeps 2 MiB. */
export const PATCHED_SSH_WINDOW = 16 << 20;

/** Freed heap glibc keeps for the next buffers (see addons/malloc_tune.c): 32 MiB took a tunnel's page faults off the profile. */
const KEEP_FREED_BYTES = 32 << 20;
/**
 * How often the kept heap goes back to the system: an idle process must not hold 32 MiB it no longer uses
 * (14 KB per client of an idle fleet of 1,000), and a busy one refills it in a few milliseconds.
 */
const RELEASE_EVERY_MS = 20_000;
let heapKept: boolean | undefined;

interface MallocTune {
  keepFreedMemory(bytes: number): boolean;
  releaseFreedMemory(): boolean;
}

/**
 * Once per process, before the first tunnel: keep freed buffers' pages instead of faulting them in again,
 * and give them back every RELEASE_EVERY_MS. Without the add-on (not glibc, not built) tunnels work the
 * same, at a higher CPU cost.
 */
export function keepFreedMemory(): boolean {
  heapKept ??= loads(
    () => packageRequire('./build/Release/malloc_tune.node'),
    (m: MallocTune) => {
      if (!m.keepFreedMemory(KEEP_FREED_BYTES)) return false;
      setInterval(() => m.releaseFreedMemory(), RELEASE_EVERY_MS).unref();
      return true;
    },
    false,
  );
  return heapKept;
}

export interface Acceleration {
  /** ssh2's native crypto binding is loaded. */
  sshCrypto: boolean;
  /** ws's bufferutil is loaded. */
  bufferutil: boolean;
  /** The largest ssh2 channel window in bytes: PATCHED_SSH_WINDOW when the patch is applied. */
  sshWindow: number;
  /** glibc keeps freed buffers' pages (addons/malloc_tune.c). */
  heapKept: boolean;
}

function loads<M, T>(load: () => unknown, read: (m: M) => T, otherwise: T): T {
  try {
    return read(load() as M);
  } catch {
    return otherwise;
  }
}

/** What makes the transport fast: native add-ons loaded, and ssh2 patched for large windows. */
export function nativeAcceleration(): Acceleration {
  return {
    sshCrypto: loads(
      () => packageRequire('ssh2/lib/protocol/crypto.js'),
      (m: { bindingAvailable?: boolean }) => !!m.bindingAvailable,
      false,
    ),
    bufferutil: loads(
      () => packageRequire('bufferutil'),
      () => !process.env.WS_NO_BUFFER_UTIL,
      false,
    ),
    sshWindow: loads(
      () => packageRequire('ssh2/lib/Channel.js'),
      (m: { MAX_WINDOW: number }) => m.MAX_WINDOW,
      0,
    ),
    heapKept: keepFreedMemory(),
  };
}

/** One debug line each when all is well, a warning naming the fix when not. */
export function reportNativeAcceleration(log: { debug(m: string): void; warn(m: string): void }): void {
  const n = nativeAcceleration();
  // A single executable cannot be rebuilt: name its platform instead of npm rebuild.
  const fix = (npm: string, addon: string) =>
    isSingleExecutable() ? `no working ${addon} in this build for ${process.platform}-${process.arch}` : npm;
  if (n.sshCrypto) log.debug('ssh2 native crypto binding is active');
  else
    log.warn(
      `ssh2 native crypto binding is not loaded: SSH runs 2-3x slower (pure JavaScript); ${fix('reinstall with build tools (python3, make, g++) and run npm rebuild ssh2', 'sshcrypto.node')}`,
    );
  if (n.bufferutil) log.debug('bufferutil is active for WebSocket masking');
  else
    log.warn(
      `bufferutil is not loaded: WebSocket masking runs in JavaScript; ${fix('run npm rebuild bufferutil', 'bufferutil.node')}`,
    );
  if (n.heapKept) log.debug('glibc keeps freed buffers for reuse (malloc_tune.node)');
  else if (process.platform === 'linux')
    log.debug(
      'malloc_tune.node is not loaded: tunnels cost more CPU (page faults on fresh buffers); run npm rebuild in the rport folder',
    );
  const mib = (n.sshWindow / (1 << 20)).toFixed(0);
  if (n.sshWindow >= PATCHED_SSH_WINDOW)
    log.debug(`ssh2 channel windows grow to ${mib} MiB (patches/ssh2+1.17.0.patch applied)`);
  else
    log.warn(
      `ssh2 channel window is ${mib} MiB: one tunnel is capped at ${mib} MiB per round trip on long links; run npx patch-package in the install folder`,
    );
}
