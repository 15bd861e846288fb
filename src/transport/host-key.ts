import { createECDH, createHash, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { MIN_FINGERPRINT_CHARS, MIN_MD5_FINGERPRINT_BYTES } from '../config/client-config.js';
import { readSmallFile, writeFileAtomic } from '../files.js';

const { utils } = ssh2;

/** "SHA256:<base64 without padding>" of an SSH public key blob, as OpenSSH prints it. */
export function fingerprintOf(publicKeyBlob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(publicKeyBlob).digest('base64').replace(/=+$/, '');
}

/** "aa:bb:..." MD5 of the blob, the form RPort's rportd logs and its clients pin. */
export function md5FingerprintOf(publicKeyBlob: Buffer): string {
  return createHash('md5')
    .update(publicKeyBlob)
    .digest('hex')
    .replace(/(..)(?!$)/g, '$1:');
}

/**
 * Whether the server's key matches the configured fingerprint: the SHA256 form (with or without the
 * "SHA256:" prefix; a prefix of at least MIN_FINGERPRINT_CHARS is enough, as RPort allows), or RPort's MD5
 * colon-hex form, whose prefix is enough as RPort's client takes it, from MIN_MD5_FINGERPRINT_BYTES on (both
 * 96 bits: no one can search for a key that shares them).
 */
export function fingerprintMatches(expected: string, publicKeyBlob: Buffer): boolean {
  const want = expected.trim();
  if (/^[0-9a-f]{2}(:[0-9a-f]{2})*$/i.test(want))
    return (
      want.length >= MIN_MD5_FINGERPRINT_BYTES * 3 - 1 && md5FingerprintOf(publicKeyBlob).startsWith(want.toLowerCase())
    );
  const bare = want.replace(/^SHA256:/, '');
  return bare.length >= MIN_FINGERPRINT_CHARS && fingerprintOf(publicKeyBlob).slice('SHA256:'.length).startsWith(bare);
}

export interface HostKey {
  /** Private key text that ssh2's Server accepts in hostKeys. */
  privateKey: string;
  fingerprint: string;
  /** RPort's form of the same key's fingerprint (MD5, colon-hex), which RPort clients pin. */
  md5Fingerprint: string;
  /** Where it came from, for the start-up log line. */
  source: string;
  /** The file it was read from or written to; none for key_seed. */
  file?: string;
}

function describe(privateKey: string, source: string): HostKey {
  const parsed = utils.parseKey(privateKey);
  if (parsed instanceof Error)
    throw new Error(`${source} is not a usable private key (${parsed.message}): delete it to have a new one generated`);
  const key = Array.isArray(parsed) ? parsed[0]! : parsed;
  const blob = key.getPublicSSH();
  return { privateKey, fingerprint: fingerprintOf(blob), md5Fingerprint: md5FingerprintOf(blob), source };
}

/** The order of P-256's group. */
const P256_N = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');

/**
 * The same ECDSA P-256 key for the same seed as RPort's rportd derives (so every client pinned to an RPort
 * server's fingerprint keeps matching): SHA-512 chained 2048 times from the seed, then 40 bytes of the
 * chain's output taken as a number k, the private scalar being k mod (n-1) + 1 (Go 1.19's ecdsa.GenerateKey).
 */
function keyFromSeed(seed: string): string {
  let next: Buffer = Buffer.from(seed, 'utf8');
  const step = () => {
    const h = createHash('sha512').update(next).digest();
    next = h.subarray(0, 32);
    return h.subarray(32);
  };
  for (let i = 0; i < 2048; i++) step();
  const bytes = Buffer.concat([step(), step()]).subarray(0, 40);
  const k = (BigInt('0x' + bytes.toString('hex')) % (P256_N - 1n)) + 1n;
  const d = Buffer.from(k.toString(16).padStart(64, '0'), 'hex');
  const ecdh = createECDH('prime256v1');
  ecdh.setPrivateKey(d);
  const pub = ecdh.getPublicKey();
  const b64 = (b: Buffer) => b.toString('base64url');
  const jwk = { kty: 'EC', crv: 'P-256', d: b64(d), x: b64(pub.subarray(1, 33)), y: b64(pub.subarray(33, 65)) };
  return createPrivateKey({ key: jwk, format: 'jwk' }).export({ type: 'sec1', format: 'pem' }).toString();
}

/** key_seed wins; otherwise a key generated once and kept (mode 0600) in data_dir. */
export function loadHostKey(dataDir: string, keySeed: string): HostKey {
  if (keySeed) return describe(keyFromSeed(keySeed), '[server] key_seed');
  const file = join(dataDir, 'rportd-host-key');
  let text: string | undefined;
  try {
    // Not through a symlink: another user's file would become the server's identity.
    text = readSmallFile(file, 64 << 10, false);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // A system error keeps its code and path: rportd turns it into one line with the fix (EACCES: whose files).
    if (code !== 'ENOENT') throw code ? err : new Error(`cannot read ${file}: ${(err as Error).message}`);
  }
  if (text !== undefined) return { ...describe(text, file), file };
  // ECDSA P-256 from Node's crypto, the kind key_seed derives too. (ssh2's own ed25519 generator makes
  // about 1 key in 170 that its parser then rejects as malformed.)
  const generated = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
    .privateKey.export({ type: 'sec1', format: 'pem' })
    .toString();
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  writeFileAtomic(file, generated, { mode: 0o600, durable: true });
  return { ...describe(generated, `${file} (new)`), file };
}
