import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  fsyncSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { userInfo } from 'node:os';
import { basename, dirname, join } from 'node:path';

// Not defined on Windows, where symlinks need privileges to create and modes mean little.
const O_NOFOLLOW = constants.O_NOFOLLOW ?? 0;
const O_NONBLOCK = constants.O_NONBLOCK ?? 0;
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
      for (let off = 0; off < buf.length;) off += writeSync(fd, buf, off);
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

/** A user's name from /etc/passwd, or "uid N" when it has none there. */
export function userName(uid: number): string {
  try {
    const line = readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((l) => l.split(':')[2] === String(uid));
    if (line) return line.split(':')[0]!;
  } catch {
    // no passwd file: the number is all there is
  }
  return `uid ${uid}`;
}

/** The name of the user this process runs as: what a fix line names (never `$(id -un)`, which is the reader's). */
export function myUserName(): string {
  try {
    return userInfo().username;
  } catch {
    return userName(process.getuid!());
  }
}

/** Why another local user could replace files in a folder: what it is, the reason, and the reason with its fix. */
export interface UnsafeFolder {
  kind: 'folder writable by every user' | 'folder writable by its group' | 'folder owned by another user';
  why: string;
  text: string;
}

/**
 * Why another local user could replace files in `dir`, or undefined when only we and root can (always on
 * Windows). Owned by a user other than us and root counts, and group- or world-writable without the sticky bit.
 * `strict`, for files opened in place rather than renamed into place (data_dir, logs): any group or world
 * write bit counts, sticky or not, since the sticky bit does not stop a symlink planted under a new name.
 */
export function folderWritableByOthers(dir: string, strict = false): UnsafeFolder | undefined {
  if (WINDOWS) return undefined;
  const st = statSync(dir);
  const mode = (st.mode & 0o7777).toString(8).padStart(4, '0');
  const sticky = (st.mode & 0o1000) !== 0;
  const writers = st.mode & 0o002 ? 'every user' : st.mode & 0o020 ? 'its group' : undefined;
  if (writers && (strict || !sticky)) {
    const why = `${dir} is writable by ${writers} (mode ${mode}, owner ${userName(st.uid)})`;
    // A sticky folder is shared on purpose (/tmp): the fix is another folder, not taking it from its users.
    const fix = sticky ? 'use a folder of its own' : `chmod ${writers === 'every user' ? 'go-w' : 'g-w'} ${dir}`;
    return { kind: `folder writable by ${writers}`, why, text: `${why}: ${fix}` };
  }
  const me = process.getuid!();
  if (st.uid !== 0 && st.uid !== me) {
    // Usually a command run by hand as another user (root) on a service's folder: giving the folder to
    // that user would break the service, so the fix is to run as the folder's owner.
    const owner = userName(st.uid);
    const why = `${dir} belongs to ${owner}, not to ${myUserName()} (this process), and ${owner} could replace files in it`;
    return {
      kind: 'folder owned by another user',
      why,
      text: `${why}: run this as ${owner} (e.g. sudo -u ${owner} ..., as its service does), or use a folder of ${myUserName()}'s`,
    };
  }
  return undefined;
}

/**
 * OpenSSH's rule for private keys: a warning when group or others have any access to `path`, naming the fix.
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

/** Thrown for what is at a path but is not a file we read or write: the message says what and why. */
export class UnsafeFileError extends Error {}

/** Opens without following a symlink at `path` itself: one that is there is refused, naming the path. */
function openNoFollow(path: string, flags: number): number {
  try {
    return openSync(path, flags | O_NOFOLLOW);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP')
      throw new UnsafeFileError(
        `${path} is a symbolic link, which rport does not follow among its own files (another user may have planted it): remove it`,
      );
    throw err;
  }
}

/**
 * Reads a small file without trusting what is at the path: a FIFO would block the read forever and
 * /dev/zero would never end, so only a regular file of at most maxBytes is read (the type is checked on
 * what was opened). A symlink to one is fine when `follow`; rport's own files (data_dir) are read with
 * follow false. Throws UnsafeFileError for anything else, or the OS error.
 */
export function readSmallFile(path: string, maxBytes: number, follow = true): string {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
  const fd = follow
    ? openSync(path, constants.O_RDONLY | O_NONBLOCK)
    : openNoFollow(path, constants.O_RDONLY | O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile())
      throw new UnsafeFileError(
        `${path} is not a regular file (${st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : st.isDirectory() ? 'a folder' : 'a special file'})`,
      );
    // One byte past the cap, so a file that grew after fstat is caught too.
    const buf = Buffer.alloc(maxBytes + 1);
    let n = 0;
    for (let r; n < buf.length && (r = readSync(fd, buf, n, buf.length - n, null)) > 0;) n += r;
    if (n > maxBytes) throw new UnsafeFileError(`${path} is larger than ${maxBytes} bytes`);
    return buf.toString('utf8', 0, n);
  } finally {
    closeSync(fd);
  }
}

/** chmod of one of rport's own files, never through a symlink (refused); a missing file is left missing. */
export function chmodOwnFile(path: string, mode: number): void {
  let fd: number;
  try {
    fd = openNoFollow(path, constants.O_RDONLY | O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  try {
    if (!fstatSync(fd).isFile()) throw new UnsafeFileError(`${path} is not a regular file: remove it`);
    fchmodSync(fd, mode);
  } finally {
    closeSync(fd);
  }
}

/**
 * Opens a log file for appending. In a folder another user can write (a root rport-watchdog logging
 * beside the client's state.json, a log in /tmp), a symlink there could point the appends at any file:
 * it is not followed. Elsewhere symlinks are (log_file = /dev/stdout).
 */
export function openForAppend(path: string, mode: number): number {
  let unsafe: UnsafeFolder | undefined;
  try {
    unsafe = folderWritableByOthers(dirname(path), true);
  } catch {
    // a missing folder: open reports it
  }
  try {
    return openSync(
      path,
      constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | (unsafe ? O_NOFOLLOW : 0),
      mode,
    );
  } catch (err) {
    if (unsafe && (err as NodeJS.ErrnoException).code === 'ELOOP')
      throw new UnsafeFileError(`${path} is a symlink, not followed because ${unsafe.why}`);
    throw err;
  }
}
