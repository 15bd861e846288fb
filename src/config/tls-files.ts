import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { ConfigError, type Config } from './loader.js';

export interface TlsPair {
  cert: string;
  key: string;
}

/** The API's TLS: the pair and [api] tls_min as Node names it. */
export interface ApiTls extends TlsPair {
  minVersion: 'TLSv1.2' | 'TLSv1.3';
}

const CERT_PEM = /-----BEGIN CERTIFICATE-----/;
const KEY_PEM = /-----BEGIN (?:(RSA|EC|ENCRYPTED) )?PRIVATE KEY-----/;

/**
 * A certificate and its private key from two PEM files, checked as a server would use them: both readable, both
 * PEM, the key unencrypted and the certificate's own. Undefined when neither key is set. Any fault is one
 * ConfigError naming both files, found at start before anything listens.
 */
export function tlsPair(c: Config, section: string, certKey: string, keyKey: string): TlsPair | undefined {
  const certFile = c.get<string>(section, certKey);
  const keyFile = c.get<string>(section, keyKey);
  if (!certFile && !keyFile) return undefined;
  if (!certFile || !keyFile)
    c.fail(section, certFile ? certKey : keyKey, `is set without its partner: set both ${certKey} and ${keyKey}`);
  // Both named where they were set; the file's name once when both come from it.
  const first = c.where(section, certKey);
  const file = /^(.*?): \[/.exec(first)?.[1];
  const second = c.where(section, keyKey);
  const both = `${first} and ${file && second.startsWith(`${file}: `) ? second.slice(file.length + 2) : second}`;
  const fail = (problem: string): never => {
    throw new ConfigError(`${both}: ${problem}`);
  };
  const read = (key: string, path: string): string => {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      return fail(
        `${key} cannot be read: ${(err as NodeJS.ErrnoException).code ?? 'error'}: give the path of a file rportd's user may read`,
      );
    }
  };
  const cert = read(certKey, certFile);
  const key = read(keyKey, keyFile);
  if (!CERT_PEM.test(cert))
    fail(`${certKey} is not a PEM certificate (no "-----BEGIN CERTIFICATE-----" line): give the certificate file`);
  const keyKind = KEY_PEM.exec(key);
  if (!keyKind)
    fail(`${keyKey} is not a PEM private key (no "-----BEGIN ... PRIVATE KEY-----" line): give the key file`);
  if (keyKind![1] === 'ENCRYPTED')
    fail(
      `${keyKey} is encrypted: rportd cannot ask for its passphrase; decrypt it (openssl pkey -in KEY -out KEY.plain)`,
    );
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ERR_OSSL_X509_KEY_VALUES_MISMATCH')
      fail(
        `the key is not the certificate's: give the private key the certificate was made for (openssl x509 -noout -pubkey -in CERT and openssl pkey -pubout -in KEY must print the same)`,
      );
    fail(`OpenSSL cannot use them (${e.message}): give a PEM certificate and its unencrypted PEM private key`);
  }
  return { cert, key };
}

/** [api] cert_file, key_file and tls_min ("1.2" or "1.3", RPort's values and default). */
export function apiTls(c: Config): ApiTls | undefined {
  const min = c.get<string>('api', 'tls_min');
  if (min !== '1.2' && min !== '1.3') c.fail('api', 'tls_min', 'must be "1.2" or "1.3" (use e.g. "1.3")');
  const pair = tlsPair(c, 'api', 'cert_file', 'key_file');
  return pair && { ...pair, minVersion: min === '1.2' ? 'TLSv1.2' : 'TLSv1.3' };
}
