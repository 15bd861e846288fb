// Our own add-ons (sd_notify, malloc_tune) for linux-arm64, cross-compiled with Debian's gcc-aarch64-linux-gnu: one C file against
// Node-API (headers from the node-gyp cache or the official Node package), no libraries to link.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CC = 'aarch64-linux-gnu-gcc';

function nodeHeaders() {
  const v = process.version.slice(1);
  // node_api.h is the same for every architecture: this Node's own headers, or node-gyp's copy of them.
  const dirs = [join(dirname(process.execPath), '../include/node'), join(homedir(), '.cache/node-gyp', v, 'include/node')];
  return dirs.find((d) => existsSync(join(d, 'node_api.h')));
}

/** The path of native/<name>.c built as <name>.node, or undefined (with the reason printed) when it cannot be built here. */
export function crossBuildAddon(name, workDir) {
  const headers = nodeHeaders();
  const why = !headers ? 'no Node headers (node_api.h) found' : (() => {
    try {
      execFileSync(CC, ['--version'], { stdio: 'ignore', timeout: 10_000 });
      return undefined;
    } catch {
      return `${CC} is not installed (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross)`;
    }
  })();
  if (why) {
    process.stdout.write(`release: linux-arm64 without ${name}.node: ${why}\n`);
    return undefined;
  }
  mkdirSync(workDir, { recursive: true });
  const out = join(workDir, `${name}.node`);
  // Node-API symbols are resolved from the executable at load time, as node-gyp links them on Linux.
  execFileSync(CC, ['-O2', '-Wall', '-shared', '-fPIC', `-DNODE_GYP_MODULE_NAME=${name}`, `-I${headers}`, '-o', out, join(ROOT, `native/${name}.c`)], { stdio: 'inherit', timeout: 120_000 });
  return out;
}
