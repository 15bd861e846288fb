import { createRequire } from 'node:module';

/**
 * Loads a dependency ('ssh2/lib/Channel.js') or a file of the package root ('./build/Release/x.node').
 * The release build (scripts/release/bundle.mjs) replaces this module in the single executables with
 * static require() calls of the same literal ids, so esbuild bundles them: call it with literals only.
 */
export const packageRequire: (id: string) => unknown = createRequire(new URL('../../../package.json', import.meta.url));
