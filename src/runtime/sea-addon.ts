import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { getRawAsset } from 'node:sea';

/**
 * Native add-ons of a single executable (the release build routes every `.node` require here). Looked for
 * first beside the executable (the .deb ships them there, so a read-only /usr under ProtectSystem=strict
 * needs no cache), then taken from the executable's own assets and extracted once into a private,
 * content-addressed cache. Throws when the add-on is not in this build: its users (ssh2, ws) fall back to
 * JavaScript, and transport/acceleration.ts says so in a warning.
 */
export function loadAddon(name: string): unknown {
  const beside = join(dirname(process.execPath), name);
  const file = existsSync(beside) ? beside : extract(name);
  const mod = { exports: {} as unknown };
  process.dlopen(mod, file);
  return mod.exports;
}

function asset(name: string): Buffer {
  try {
    return Buffer.from(getRawAsset(name) as ArrayBuffer);
  } catch {
    throw new Error(`the native add-on ${name} is not part of this build for ${process.platform}-${process.arch}`);
  }
}

/** Folders to try, most specific first: systemd's CacheDirectory=, the user's cache, the temp folder. */
function cacheRoots(): string[] {
  const env = process.env;
  const roots: string[] = [];
  if (env.CACHE_DIRECTORY) roots.push(join(env.CACHE_DIRECTORY.split(':')[0]!, 'native'));
  if (process.platform === 'win32') {
    if (env.LOCALAPPDATA) roots.push(join(env.LOCALAPPDATA, 'rport', 'native'));
  } else if (env.XDG_CACHE_HOME) roots.push(join(env.XDG_CACHE_HOME, 'rport', 'native'));
  else if (env.HOME) roots.push(join(homedir(), '.cache', 'rport', 'native'));
  roots.push(join(tmpdir(), `rport-native-${process.getuid?.() ?? 'user'}`));
  return roots;
}

/** A folder of ours only: created 0700, not a symlink, owned by this user, not writable by others. */
function privateDir(dir: string): boolean {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = lstatSync(dir);
    if (!st.isDirectory()) return false;
    if (process.platform === 'win32') return true;
    return st.uid === process.getuid!() && (st.mode & 0o022) === 0;
  } catch {
    return false;
  }
}

function extract(name: string): string {
  const bytes = asset(name);
  const hash = createHash('sha256').update(bytes).digest('hex');
  const tried: string[] = [];
  for (const root of cacheRoots()) {
    const dir = join(root, hash);
    const file = join(dir, name);
    if (!privateDir(root) || !privateDir(dir)) {
      tried.push(root);
      continue;
    }
    try {
      // Content-addressed: a file whose bytes do not hash to its folder's name is replaced, never loaded.
      if (existsSync(file) && createHash('sha256').update(readFileSync(file)).digest('hex') === hash) return file;
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, bytes, { mode: 0o700 });
      renameSync(tmp, file);
      return file;
    } catch {
      tried.push(root);
    }
  }
  throw new Error(
    `cannot extract the native add-on ${name}: no private writable cache folder (tried ${tried.join(', ')}); put ${name} beside the executable`,
  );
}
