// The layers point one way: each command loads only what it uses (a supervisor must not load SSH, a client
// must not load SQLite or the API), and the lower folders never import the upper ones. The order is read from
// the TypeScript sources, so that `import type` counts: a type is a dependency on its owner too.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import test from 'node:test';
import { fileURLToPath } from 'node:url';

/**
 * src/ from the bottom up: a folder (or a file directly in src/) may import only itself and those before it.
 * docs/architecture.md draws the same list. A new folder fails the test below until it is placed here.
 */
const LAYERS = [
  'shared',
  'version.ts',
  'files.ts',
  'log.ts',
  'timeout.ts',
  'config',
  'runtime',
  'transport',
  'watchdog',
  'client',
  'supervisor',
  'service',
  'server',
  'cluster',
  'api',
  'daemon',
  'cli',
];

/** The TypeScript sources, not dist/: `import type` is erased from the compiled files. */
const SOURCES = fileURLToPath(new URL('../../src/', import.meta.url));
/** The compiled files, for what a command loads at run time. */
const COMPILED = fileURLToPath(new URL('../src/', import.meta.url));

const IMPORT =
  /^\s*(?:import|export)\s[^'";]*?from\s+['"]([^'"]+)['"]|^\s*import\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm;

/** The specifiers a file imports (static, type-only and dynamic), as written. */
function specifiers(file: string): string[] {
  return [...readFileSync(file, 'utf8').matchAll(IMPORT)].map((m) => (m[1] ?? m[2] ?? m[3])!);
}

/** A relative specifier as the file it names: a .js specifier names the .ts source beside it. */
function target(from: string, spec: string): string {
  const file = resolve(dirname(from), spec);
  return from.endsWith('.ts') ? file.replace(/\.js$/, '.ts') : file;
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return tsFiles(path);
    return name.endsWith('.ts') && !name.endsWith('.d.ts') ? [path] : [];
  });
}

/** The layer a file of src/ is in: its top folder, or its own name for a file directly in src/. */
const layerOf = (file: string) => relative(SOURCES, file).split('/')[0]!;

/** Every module of ours a compiled file reaches through static and dynamic imports, and the packages they load. */
function reach(
  file: string,
  modules = new Set<string>(),
  packages = new Set<string>(),
): { modules: Set<string>; packages: Set<string> } {
  if (modules.has(file)) return { modules, packages };
  modules.add(file);
  for (const spec of specifiers(file)) {
    if (spec.startsWith('.')) reach(target(file, spec), modules, packages);
    else if (!spec.startsWith('node:'))
      packages.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
  }
  return { modules, packages };
}

test('each command loads only its own layers and packages', () => {
  // rport is one executable for the client and its watchdog: each of the two loads only its own part.
  const watchdog = {
    neverPackages: ['ssh2', 'ws', 'better-sqlite3', 'fastify', 'bcryptjs'],
    neverFolders: ['client', 'server', 'api', 'transport'],
  };
  const table: Array<{ command: string; neverPackages: string[]; neverFolders: string[] }> = [
    { command: 'rport-watchdog', ...watchdog },
    { command: 'watchdog-command', ...watchdog },
    {
      command: 'client-command',
      neverPackages: ['better-sqlite3', 'fastify', 'bcryptjs', 'prom-client'],
      neverFolders: ['server', 'api', 'supervisor'],
    },
    {
      command: 'rport',
      neverPackages: ['better-sqlite3', 'fastify', 'bcryptjs', 'prom-client'],
      neverFolders: ['server', 'api'],
    },
  ];
  for (const { command, neverPackages, neverFolders } of table) {
    const { modules, packages } = reach(join(COMPILED, 'cli', `${command}.js`));
    const folders = new Set([...modules].map((m) => relative(COMPILED, m).split('/')[0]!));
    for (const p of neverPackages) assert.ok(!packages.has(p), `${command} loads ${p}`);
    for (const f of neverFolders) assert.ok(!folders.has(f), `${command} loads src/${f}/`);
  }
});

test('every folder and file of src/ has its place in the layers', () => {
  const unplaced = readdirSync(SOURCES).filter(
    (name) => (statSync(join(SOURCES, name)).isDirectory() || name.endsWith('.ts')) && !LAYERS.includes(name),
  );
  assert.deepEqual(
    unplaced,
    [],
    `src/${unplaced[0]} is in no layer: add it to LAYERS in test/layers.test.ts (and to docs/architecture.md)`,
  );
  const gone = LAYERS.filter((name) => !readdirSync(SOURCES).includes(name));
  assert.deepEqual(gone, [], `LAYERS names ${gone.join(', ')}, which src/ no longer has`);
});

test('docs/architecture.md draws the same layers in the same order', () => {
  const doc = readFileSync(fileURLToPath(new URL('../../docs/architecture.md', import.meta.url)), 'utf8');
  const line = /^layers, bottom up: (.+)$/m.exec(doc);
  assert.ok(line, 'docs/architecture.md has no "layers, bottom up: a < b < ..." line');
  assert.deepEqual(
    line[1]!.split(' < '),
    LAYERS,
    'docs/architecture.md lists other layers than LAYERS in test/layers.test.ts: make them one list',
  );
});

test('a layer imports only itself and the layers below it, types included', () => {
  const crossed: string[] = [];
  for (const file of tsFiles(SOURCES)) {
    const from = LAYERS.indexOf(layerOf(file));
    for (const spec of specifiers(file).filter((s) => s.startsWith('.'))) {
      const to = target(file, spec);
      const layer = layerOf(to);
      if (to.startsWith(SOURCES) && LAYERS.indexOf(layer) > from)
        crossed.push(`src/${relative(SOURCES, file)} imports ${spec} (${layer} is above ${layerOf(file)})`);
      if (!to.startsWith(SOURCES)) crossed.push(`src/${relative(SOURCES, file)} imports ${spec}, outside src/`);
    }
  }
  assert.deepEqual(crossed, []);
});

test('no import cycles between files of src/', () => {
  const edges = new Map<string, string[]>();
  for (const file of tsFiles(SOURCES))
    edges.set(
      file,
      specifiers(file)
        .filter((s) => s.startsWith('.'))
        .map((s) => target(file, s)),
    );
  // Depth-first: a file met again while still on the path closes a cycle.
  const done = new Set<string>();
  const cycles: string[] = [];
  const visit = (file: string, path: string[]) => {
    const at = path.indexOf(file);
    if (at >= 0) return void cycles.push([...path.slice(at), file].map((f) => relative(SOURCES, f)).join(' -> '));
    if (done.has(file)) return;
    for (const next of edges.get(file) ?? []) visit(next, [...path, file]);
    done.add(file);
  };
  for (const file of edges.keys()) visit(file, []);
  assert.deepEqual(cycles, []);
});

test('an API route module imports no other route module: what two share is in api/ (context.ts, peers.ts, client-view.ts)', () => {
  const routes = join(SOURCES, 'api', 'routes');
  const shared = join(routes, 'schemas.ts');
  const crossed = tsFiles(routes).flatMap((file) =>
    specifiers(file)
      .filter((s) => s.startsWith('.'))
      .map((s) => target(file, s))
      .filter((to) => dirname(to) === routes && to !== shared && to !== file)
      .map((to) => `${relative(SOURCES, file)} imports ${relative(SOURCES, to)}`),
  );
  assert.deepEqual(crossed, []);
});

test('bench/ and harness/ import nothing of test/: what tests and benchmarks share is in harness/', () => {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const crossed = ['bench', 'harness']
    .filter((dir) => existsSync(join(root, dir)))
    .flatMap((dir) => tsFiles(join(root, dir)))
    .flatMap((file) =>
      specifiers(file)
        .filter((s) => s.startsWith('.') && relative(root, target(file, s)).startsWith('test/'))
        .map((s) => `${relative(root, file)} imports ${s}`),
    );
  assert.deepEqual(crossed, []);
});
