// Our own add-ons (sd_notify, malloc_tune) for linux-arm64, cross-compiled with Debian's gcc-aarch64-linux-gnu: one C file against
// Node-API (headers from the official Node package, node_api.h being the same for every architecture), no libraries to link.
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CC = 'aarch64-linux-gnu-gcc';

/**
 * The path of addons/<name>.c built as <name>.node against the Node headers in `headers`, or undefined
 * (with the reason printed) when it cannot be built here.
 */
export function crossBuildAddon(name, workDir, headers) {
  try {
    execFileSync(CC, ['--version'], { stdio: 'ignore', timeout: 10_000 });
  } catch {
    process.stdout.write(`release: linux-arm64 without ${name}.node: ${CC} is not installed (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross)\n`);
    return undefined;
  }
  mkdirSync(workDir, { recursive: true });
  const out = join(workDir, `${name}.node`);
  // Node-API symbols are resolved from the executable at load time, as node-gyp links them on Linux.
  execFileSync(CC, ['-O2', '-Wall', '-shared', '-fPIC', `-DNODE_GYP_MODULE_NAME=${name}`, `-I${headers}`, '-o', out, join(ROOT, `addons/${name}.c`)], { stdio: 'inherit', timeout: 120_000 });
  return out;
}
