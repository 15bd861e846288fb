import { createRequire } from 'node:module';

/** Running as one of the release's single executables (Node's SEA), not from a checkout. */
export function isSingleExecutable(): boolean {
  try {
    // node:sea exists from Node 20.12; an older Node runs from a checkout only.
    return (createRequire(import.meta.url)('node:sea') as { isSea(): boolean }).isSea();
  } catch {
    return false;
  }
}
