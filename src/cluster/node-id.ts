import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { readSmallFile, writeFileAtomic } from '../files.js';

/**
 * This node's id: generated once and kept in data_dir, so that a restarted node is the same node. Never
 * read or written through a symlink (see readSmallFile and writeFileAtomic).
 */
export function loadNodeId(dataDir: string): string {
  const file = join(dataDir, 'node-id');
  try {
    const id = readSmallFile(file, 4096, false).trim();
    if (/^[\w.-]{1,64}$/.test(id)) return id;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // A system error as it is (code and path): rportd turns it into one line with the fix.
    if (code !== 'ENOENT') throw err;
  }
  const id = randomUUID();
  writeFileAtomic(file, `${id}\n`, { mode: 0o600 });
  return id;
}
