import { createHash, createHmac, randomBytes } from 'node:crypto';
import { formatDuration } from '../shared/duration.js';
import { safeEqual } from '../server/credentials.js';

/**
 * The header a node signs its calls to another node with: `v1 TIME NONCE BODY_SHA256 MAC`, MAC the HMAC-SHA256
 * under the cluster secret of the method, the path with its query, TIME, NONCE and the body's SHA-256. The
 * secret itself never goes on the wire, so one who reads the traffic of a plain-HTTP node link learns no key,
 * can change neither path nor body, and cannot send a call again.
 */
export const SIGNATURE_HEADER = 'x-rport-cluster-signature';
/** How far a call's time may be from this node's clock: the nodes' clocks must agree well within this (NTP). */
export const MAX_SIGNATURE_AGE_MS = 30_000;
/** Nonces remembered (each for twice the age bound): only valid signatures get here, so only nodes fill it. */
const MAX_NONCES = 100_000;

export const sha256 = (body: string | Buffer) => createHash('sha256').update(body).digest('hex');
const EMPTY = sha256('');

function mac(secret: string, method: string, url: string, time: string, nonce: string, body: string): string {
  return createHmac('sha256', secret)
    .update([method.toUpperCase(), url, time, nonce, body].join('\n'))
    .digest('base64url');
}

/** A signed call's claims, once its MAC is checked: the body must still be compared with `bodySha256`. */
export interface Signed {
  bodySha256: string;
}

/** Signs and checks node-to-node calls with one cluster secret, and remembers the nonces seen. */
export class Signer {
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly secret: () => string,
    private readonly now: () => number = Date.now,
  ) {}

  /** The header value for a call of `method` to `url` (path and query) with `body` (the bytes sent, '' for none). */
  sign(method: string, url: string, body: string): string {
    const time = String(this.now());
    const nonce = randomBytes(16).toString('base64url');
    const hash = body === '' ? EMPTY : sha256(body);
    return `v1 ${time} ${nonce} ${hash} ${mac(this.secret(), method, url, time, nonce, hash)}`;
  }

  /** The signed claims, or the one line that says why the header is refused. */
  verify(method: string, url: string, header: string): Signed | string {
    const secret = this.secret();
    if (!secret) return 'this node has not joined the cluster yet';
    const [version, time, nonce, hash, got, ...rest] = header.split(' ');
    if (version !== 'v1' || !time || !/^\d{1,15}$/.test(time) || !nonce || !hash || !got || rest.length)
      return 'it is not "v1 TIME NONCE BODY_SHA256 MAC"';
    if (!safeEqual(got, mac(secret, method, url, time, nonce, hash)))
      return 'its MAC is wrong (another cluster secret, or the method, path or time changed on the way)';
    const now = this.now();
    const skew = Math.abs(now - Number(time));
    if (skew > MAX_SIGNATURE_AGE_MS)
      return `it was made ${formatDuration(skew)} away from this node's clock, more than ${formatDuration(MAX_SIGNATURE_AGE_MS)}: a replay, or the nodes' clocks disagree (use NTP)`;
    for (const [n, until] of this.seen) {
      if (until > now && this.seen.size < MAX_NONCES) break;
      this.seen.delete(n);
    }
    if (this.seen.has(nonce)) return 'it was sent before (a replay)';
    this.seen.set(nonce, now + 2 * MAX_SIGNATURE_AGE_MS);
    return { bodySha256: hash };
  }
}
