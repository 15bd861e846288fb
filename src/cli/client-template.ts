import { readFileSync } from 'node:fs';

/**
 * The commented rport.conf the packages install (packaging/conf/rport.conf), which `rport init` fills in.
 * Read beside dist/ here; the release bundle has the text baked in (scripts/release/bundle.mjs).
 */
export function clientTemplate(): string {
  return readFileSync(new URL('../../../packaging/conf/rport.conf', import.meta.url), 'utf8');
}
