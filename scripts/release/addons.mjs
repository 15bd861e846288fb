// The add-ons written against V8's own API (better-sqlite3, ssh2's crypto binding, cpu-features) load only
// in the Node they were built for: rebuilt from their npm sources for the embedded Node (its headers come
// in its npm package), cached per version. Node-API ones (bufferutil, sd_notify, malloc_tune) load in any.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { delimiter, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NODE_LTS, releaseCache } from './node-lts.mjs';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Asset name -> the package folder to build in, the built file in it, and extra node-gyp arguments. */
const ABI_ADDONS = {
  'better_sqlite3.node': { dir: 'node_modules/better-sqlite3', built: 'build/Release/better_sqlite3.node', args: ['--release'] },
  // As ssh2's install.js: the binding's code paths depend on the OpenSSL in that Node.
  'sshcrypto.node': { dir: 'node_modules/ssh2/lib/protocol/crypto', built: 'build/Release/sshcrypto.node', args: ['--real_openssl_major=@OPENSSL@'] },
  'cpufeatures.node': { dir: 'node_modules/cpu-features', built: 'build/Release/cpufeatures.node', args: [] },
};

/** npm's own node-gyp: npm tells its scripts where; outside npm, the one beside npm. */
function nodeGyp() {
  if (process.env.npm_config_node_gyp) return process.env.npm_config_node_gyp;
  const root = execFileSync('npm', ['root', '-g'], { encoding: 'utf8', timeout: 60_000 }).trim();
  return join(root, 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
}

/**
 * Replaces, in `addons` (asset name -> file), each V8-ABI add-on with one built for NODE_LTS, whose
 * package folder (bin/node, include/node) is `nodeDir`. Built in `work`, kept in the cache.
 */
export function addonsForLts(addons, nodeDir, work) {
  const node = join(nodeDir, 'bin', 'node');
  const out = new Map(addons);
  for (const [name, spec] of Object.entries(ABI_ADDONS)) {
    if (!addons.has(name)) continue;
    const cached = join(releaseCache(), `addons-node-${NODE_LTS}`, name);
    if (!existsSync(cached)) {
      const src = join(work, 'addons', name);
      rmSync(src, { recursive: true, force: true });
      const stale = join(ROOT, spec.dir, 'build');
      cpSync(join(ROOT, spec.dir), src, { recursive: true, filter: (p) => p !== stale && !p.startsWith(stale + sep) });
      process.stdout.write(`release: building ${name} for Node ${NODE_LTS}\n`);
      const openssl = execFileSync(node, ['-p', 'process.versions.openssl'], { encoding: 'utf8', timeout: 30_000 }).trim();
      try {
        execFileSync(node, [nodeGyp(), 'rebuild', `--nodedir=${nodeDir}`, '-j', '2', '--loglevel=warn', ...spec.args.map((a) => a.replace('@OPENSSL@', openssl.split('.')[0]))], {
          cwd: src,
          // binding.gyp files ask `node` for nan's folder: the checkout's node_modules. npm's nodedir
          // (Debian's npm sets /usr) would win over --nodedir.
          env: { ...process.env, npm_config_nodedir: nodeDir, PATH: `${join(nodeDir, 'bin')}${delimiter}${process.env.PATH}`, NODE_PATH: join(ROOT, 'node_modules') },
          // The compilers' warnings about these packages' code are not ours to act on: shown on failure only.
          stdio: ['ignore', 'pipe', 'pipe'],
          maxBuffer: 64 << 20,
          timeout: 900_000,
        });
      } catch (err) {
        process.stderr.write(`${err.stdout ?? ''}${err.stderr ?? ''}`);
        throw new Error(`building ${name} for Node ${NODE_LTS} in ${src} failed (its output is above)`, { cause: err });
      }
      mkdirSync(join(cached, '..'), { recursive: true });
      renameSync(join(src, spec.built), cached);
    }
    out.set(name, cached);
  }
  return out;
}
