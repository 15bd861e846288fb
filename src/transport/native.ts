import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** Whether the native add-ons that make the transport fast are loaded (ssh2's crypto, ws's bufferutil). */
export function nativeAcceleration(): { sshCrypto: boolean; bufferutil: boolean } {
  let sshCrypto = false;
  let bufferutil = false;
  try {
    sshCrypto = !!(require('ssh2/lib/protocol/crypto.js') as { bindingAvailable?: boolean }).bindingAvailable;
  } catch {
    sshCrypto = false;
  }
  try {
    require('bufferutil');
    bufferutil = !process.env.WS_NO_BUFFER_UTIL;
  } catch {
    bufferutil = false;
  }
  return { sshCrypto, bufferutil };
}

/** One debug line when all is well, a warning naming the fix when not. */
export function reportNativeAcceleration(log: { debug(m: string): void; warn(m: string): void }): void {
  const n = nativeAcceleration();
  if (n.sshCrypto) log.debug("ssh2 native crypto binding is active");
  else log.warn('ssh2 native crypto binding is not loaded: SSH runs 2-3x slower; reinstall with build tools (python3, make, g++) and run npm rebuild ssh2');
  if (n.bufferutil) log.debug('bufferutil is active for WebSocket masking');
  else log.warn('bufferutil is not loaded: WebSocket masking runs in JavaScript; run npm rebuild bufferutil');
}
