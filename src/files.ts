import { randomBytes } from 'node:crypto';
import { closeSync, constants, fchmodSync, fsyncSync, openSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

// Not defined on Windows, where symlinks need privileges to create and modes mean little.
const O_NOFOLLOW = constants.O_NOFOLLOW ?? 0;
const WINDOWS = process.platform === 'win32';

export interface AtomicWriteOptions {
  /** Set with fchmod, so the umask cannot change it. */
  mode: number;
  /** fsync before the rename: for files whose loss on power failure matters (keys), not for heartbeats. */
  durable?: boolean;
}

/**
 * Writes `path` so that a reader sees the old file or the new one, never a partial one: a temporary file
 * with a random name in the same folder, created exclusively and never through a symlink (a name planted
 * there by another user makes the write fail instead of writing through it), then renamed over `path`
 * (which replaces a symlink at `path` itself rather than writing to where it points). On failure the
 * temporary file is removed and the error thrown.
 */
export function writeFileAtomic(path: string, data: string | Buffer, o: AtomicWriteOptions): void {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | O_NOFOLLOW, o.mode);
  try {
    try {
      if (!WINDOWS) fchmodSync(fd, o.mode);
      const buf = typeof data === 'string' ? Buffer.from(data) : data;
      for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off);
      if (o.durable) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
    throw err;
  }
}

/**
 * Why another local user could replace files in `dir` (world-writable without the sticky bit, or owned
 * by another user than us and root), or undefined when only we and root can. Undefined on Windows.
 */
export function folderWritableByOthers(dir: string): string | undefined {
  if (WINDOWS) return undefined;
  const st = statSync(dir);
  if (st.mode & 0o002 && !(st.mode & 0o1000)) return `${dir} is writable by every user (mode ${(st.mode & 0o7777).toString(8)}): chmod o-w ${dir}`;
  const me = process.getuid!();
  if (st.uid !== 0 && st.uid !== me) return `${dir} is owned by another user (uid ${st.uid}), who can replace files in it: chown ${me} ${dir}`;
  return undefined;
}

/**
 * OpenSSH's rule for secret files: a warning when group or others may read `path`, naming the fix.
 * Undefined when the file is private, missing, or on Windows (where modes do not say who can read).
 */
export function readableByOthers(path: string, what: string): string | undefined {
  if (WINDOWS) return undefined;
  let mode: number;
  try {
    mode = statSync(path).mode & 0o777;
  } catch {
    return undefined; // reading it reports what is wrong
  }
  if ((mode & 0o077) === 0) return undefined;
  return `${what} ${path} is accessible by group or others (mode ${mode.toString(8).padStart(4, '0')}), and holds secrets: chmod 600 ${path}`;
}
