// The layers point one way: each command loads only what it uses (a supervisor must not load SSH, a client
// must not load SQLite or the API), and the lower folders never import the upper ones.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import test from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

/** Every module of ours a file reaches through static and dynamic imports, and the packages they load. */
function reach(file: string, modules = new Set<string>(), packages = new Set<string>()): { modules: Set<string>; packages: Set<string> } {
  if (modules.has(file)) return { modules, packages };
  modules.add(file);
  const text = readFileSync(file, 'utf8');
  for (const m of text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm)) {
    const spec = (m[1] ?? m[2])!;
    if (spec.startsWith('.')) reach(resolve(dirname(file), spec), modules, packages);
    else if (!spec.startsWith('node:')) packages.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
  }
  return { modules, packages };
}

const folders = (modules: Set<string>) => new Set([...modules].map((m) => relative(SRC, m).split('/')[0]!));

test('each command loads only its own layers and packages', () => {
  // rport is one executable for the client and its watchdog: each of the two loads only its own part.
  const watchdog = { neverPackages: ['ssh2', 'ws', 'better-sqlite3', 'fastify', 'bcryptjs'], neverFolders: ['client', 'server', 'api', 'transport'] };
  const table: Array<{ command: string; neverPackages: string[]; neverFolders: string[] }> = [
    { command: 'rport-watchdog', ...watchdog },
    { command: 'watchdog-command', ...watchdog },
    { command: 'client-command', neverPackages: ['better-sqlite3', 'fastify', 'bcryptjs', 'prom-client'], neverFolders: ['server', 'api', 'supervisor'] },
    { command: 'rport', neverPackages: ['better-sqlite3', 'fastify', 'bcryptjs', 'prom-client'], neverFolders: ['server', 'api'] },
  ];
  for (const { command, neverPackages, neverFolders } of table) {
    const { modules, packages } = reach(join(SRC, 'cli', `${command}.js`));
    for (const p of neverPackages) assert.ok(!packages.has(p), `${command} loads ${p}`);
    for (const f of neverFolders) assert.ok(!folders(modules).has(f), `${command} loads src/${f}/`);
  }
});

test('lower folders never import upper ones', () => {
  const upper: Record<string, string[]> = {
    config: ['client', 'server', 'api', 'cli', 'watchdog', 'supervisor', 'transport'],
    transport: ['client', 'server', 'api', 'cli', 'watchdog', 'supervisor'],
    watchdog: ['client', 'server', 'api', 'cli', 'supervisor'],
    supervisor: ['client', 'server', 'api', 'cli'],
    client: ['server', 'api', 'cli', 'supervisor'],
    server: ['api', 'cli'],
    cluster: ['api', 'cli', 'client', 'supervisor'],
  };
  for (const [folder, forbidden] of Object.entries(upper)) {
    const modules = new Set<string>();
    for (const file of readdirSync(join(SRC, folder)).filter((f) => f.endsWith('.js'))) reach(join(SRC, folder, file), modules);
    for (const f of forbidden) assert.ok(!folders(modules).has(f), `src/${folder}/ reaches src/${f}/`);
  }
});

/** The folders (and base files, src/*.js) that one folder's modules reach. */
function reachOf(folder: string): Set<string> {
  const modules = new Set<string>();
  for (const file of readdirSync(join(SRC, folder)).filter((f) => f.endsWith('.js'))) reach(join(SRC, folder, file), modules);
  return folders(modules);
}

test('src/shared/ imports nothing of ours but itself, and config/ only shared/ and the base files', () => {
  assert.deepEqual([...reachOf('shared')], ['shared']);
  const isBase = (f: string) => f.endsWith('.js');
  const beyond = [...reachOf('config')].filter((f) => f !== 'config' && f !== 'shared' && !isBase(f));
  assert.deepEqual(beyond, [], `src/config/ reaches ${beyond.join(', ')}`);
  // The base files sit below everything: a base file that reaches a folder other than shared/ would drag it into config/.
  for (const base of readdirSync(SRC).filter(isBase)) {
    const above = [...folders(reach(join(SRC, base)).modules)].filter((f) => f !== 'shared' && !isBase(f));
    assert.deepEqual(above, [], `src/${base} reaches ${above.join(', ')}`);
  }
});
