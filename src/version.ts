import { readFileSync } from 'node:fs';

// dist/src/version.js -> ../../package.json; read once so --version and the connection request agree.
const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
export const VERSION: string = pkg.version;
