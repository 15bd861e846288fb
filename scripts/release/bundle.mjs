// esbuild bundles of the two executables for Node's single executable applications (SEA): one CommonJS file
// each (a SEA main script is CommonJS and its require() only reaches Node's built-in modules), every
// native add-on turned into a call to src/runtime/sea-addon.ts, and the version and rport.conf template baked in.
import { build } from 'esbuild';
import { readFileSync, readdirSync } from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ADDON_LOADER = join(ROOT, 'src/runtime/sea-addon.ts');

/** The executables: rport is also rport-watchdog (src/cli/rport.ts dispatches by name or subcommand). */
export const COMMANDS = {
  rport: 'src/cli/rport.ts',
  rportd: 'src/cli/rportd.ts',
};

/** What the client must not carry: the server, its registry and its API. */
const CLIENT_FORBIDDEN = [/node_modules\/better-sqlite3\//, /node_modules\/fastify\//, /^src\/server\//, /^src\/api\//];

/** The literal ids given to packageRequire() anywhere in src/, so the replacement can require each one. */
function packageRequireIds() {
  const ids = new Set();
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (p.endsWith('.ts')) for (const m of readFileSync(p, 'utf8').matchAll(/packageRequire\('([^']+)'\)/g)) ids.add(m[1]);
    }
  };
  walk(join(ROOT, 'src'));
  return [...ids];
}

/**
 * Routes add-ons to sea-addon.ts and records, per asset name, the file it was built from (on this machine:
 * a build for linux-x64). `.node` files by path (ssh2's sshcrypto, cpu-features, sd_notify), bufferutil
 * (node-gyp-build looks for its prebuilds at run time) and `bindings` (better-sqlite3's loader).
 */
function seaPlugin(version, addons) {
  const loaderRequire = `require(${JSON.stringify(ADDON_LOADER)})`;
  return {
    name: 'rport-sea',
    setup(b) {
      b.onLoad({ filter: /[\\/]src[\\/]version\.ts$/ }, () => ({ contents: `export const VERSION = ${JSON.stringify(version)};`, loader: 'ts' }));
      // rport init's template: no packaging/ folder beside a single executable.
      b.onLoad({ filter: /[\\/]src[\\/]cli[\\/]client-template\.ts$/ }, () => ({
        contents: `export const clientTemplate = () => ${JSON.stringify(readFileSync(join(ROOT, 'packaging/conf/rport.conf'), 'utf8'))};`,
        loader: 'js',
      }));
      b.onLoad({ filter: /[\\/]src[\\/]runtime[\\/]package-require\.ts$/ }, () => ({
        resolveDir: ROOT,
        loader: 'js',
        contents: `export function packageRequire(id) {\n  switch (id) {\n${packageRequireIds()
          .map((id) => `    case ${JSON.stringify(id)}: return require(${JSON.stringify(id)});`)
          .join('\n')}\n    default: throw new Error('packageRequire: ' + id + ' is not bundled');\n  }\n}\n`,
      }));
      // BcryptPool's worker thread: its code bundled on its own and carried as a string (no file beside a SEA).
      b.onLoad({ filter: /[\\/]src[\\/]server[\\/]bcrypt-worker-entry\.ts$/ }, async () => {
        const worker = await build({
          absWorkingDir: ROOT, entryPoints: ['src/server/bcrypt-worker.ts'], bundle: true, write: false, platform: 'node', target: 'node20',
          format: 'cjs', minify: true, legalComments: 'none', logLevel: 'error',
        });
        return { contents: `export const BCRYPT_WORKER = { code: ${JSON.stringify(worker.outputFiles[0].text)} };`, loader: 'js' };
      });
      b.onResolve({ filter: /\.node$/ }, (args) => {
        const source = resolve(args.resolveDir, args.path);
        addons.set(basename(source), source);
        return { path: basename(source), namespace: 'addon' };
      });
      b.onResolve({ filter: /^bufferutil$/ }, () => {
        addons.set('bufferutil.node', join(ROOT, `node_modules/bufferutil/prebuilds/linux-x64/bufferutil.node`));
        return { path: 'bufferutil.node', namespace: 'addon' };
      });
      b.onResolve({ filter: /^bindings$/ }, (args) => {
        if (!args.importer.includes('better-sqlite3')) throw new Error(`bindings required by ${args.importer}: only better-sqlite3 is known`);
        addons.set('better_sqlite3.node', join(ROOT, 'node_modules/better-sqlite3/build/Release/better_sqlite3.node'));
        return { path: 'bindings', namespace: 'bindings' };
      });
      b.onLoad({ filter: /.*/, namespace: 'addon' }, (args) => ({ contents: `module.exports = ${loaderRequire}.loadAddon(${JSON.stringify(args.path)});`, loader: 'js', resolveDir: ROOT }));
      b.onLoad({ filter: /.*/, namespace: 'bindings' }, () => ({ contents: `module.exports = (name) => ${loaderRequire}.loadAddon(name);`, loader: 'js', resolveDir: ROOT }));
    },
  };
}

/**
 * Bundles one command into outFile. Returns the add-ons it loads (asset name -> the linux-x64 file) and
 * the bundle's size; throws when the client would carry a server part.
 */
export async function bundleCommand(command, outFile, version) {
  const addons = new Map();
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: [COMMANDS[command]],
    outfile: outFile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    minify: true,
    legalComments: 'none',
    metafile: true,
    logLevel: 'error',
    // The sources are ES modules; the two that use import.meta.url (version.ts, package-require.ts) are
    // replaced above, and supervisor/install.ts asks for the executable's path when it runs as a SEA.
    define: { 'import.meta.url': '__rport_import_meta_url' },
    banner: { js: 'const __rport_import_meta_url = require("node:url").pathToFileURL(__filename).href;' },
    plugins: [seaPlugin(version, addons)],
  });
  const inputs = Object.keys(result.metafile.inputs).map((p) => relative(ROOT, resolve(ROOT, p)));
  if (command === 'rport') {
    const bad = inputs.filter((p) => CLIENT_FORBIDDEN.some((re) => re.test(p)));
    if (bad.length) throw new Error(`the ${command} bundle must not contain server parts, but has ${bad.slice(0, 5).join(', ')}`);
  }
  return { addons, inputs };
}
