import { packageRequire } from '../native/package-require.js';
import { isSingleExecutable } from '../native/sea.js';

/** The channel window patches/ssh2+1.17.0.patch sets; unpatched ssh2 has 2 MiB. */
export const PATCHED_SSH_WINDOW = 8 << 20;

export interface Acceleration {
  /** ssh2's native crypto binding is loaded. */
  sshCrypto: boolean;
  /** ws's bufferutil is loaded. */
  bufferutil: boolean;
  /** ssh2's channel window in bytes: PATCHED_SSH_WINDOW when the patch is applied. */
  sshWindow: number;
}

function loads<T>(load: () => any, read: (m: any) => T, otherwise: T): T {
  try {
    return read(load());
  } catch {
    return otherwise;
  }
}

/** What makes the transport fast: native add-ons loaded, and ssh2 patched for large windows. */
export function nativeAcceleration(): Acceleration {
  return {
    sshCrypto: loads(() => packageRequire('ssh2/lib/protocol/crypto.js'), (m: { bindingAvailable?: boolean }) => !!m.bindingAvailable, false),
    bufferutil: loads(() => packageRequire('bufferutil'), () => !process.env.WS_NO_BUFFER_UTIL, false),
    sshWindow: loads(() => packageRequire('ssh2/lib/Channel.js'), (m: { MAX_WINDOW: number }) => m.MAX_WINDOW, 0),
  };
}

/** One debug line each when all is well, a warning naming the fix when not. */
export function reportNativeAcceleration(log: { debug(m: string): void; warn(m: string): void }): void {
  const n = nativeAcceleration();
  // A single executable cannot be rebuilt: name its platform instead of npm rebuild.
  const fix = (npm: string, addon: string) => (isSingleExecutable() ? `no working ${addon} in this build for ${process.platform}-${process.arch}` : npm);
  if (n.sshCrypto) log.debug('ssh2 native crypto binding is active');
  else log.warn(`ssh2 native crypto binding is not loaded: SSH runs 2-3x slower (pure JavaScript); ${fix('reinstall with build tools (python3, make, g++) and run npm rebuild ssh2', 'sshcrypto.node')}`);
  if (n.bufferutil) log.debug('bufferutil is active for WebSocket masking');
  else log.warn(`bufferutil is not loaded: WebSocket masking runs in JavaScript; ${fix('run npm rebuild bufferutil', 'bufferutil.node')}`);
  const mib = (n.sshWindow / (1 << 20)).toFixed(0);
  if (n.sshWindow >= PATCHED_SSH_WINDOW) log.debug(`ssh2 channel window is ${mib} MiB (patches/ssh2+1.17.0.patch applied)`);
  else log.warn(`ssh2 channel window is ${mib} MiB: one tunnel is capped at ${mib} MiB per round trip on long links; run npx patch-package in the install folder`);
}
