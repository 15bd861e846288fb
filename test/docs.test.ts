import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { apiRoutes } from '../src/api/api-server.js';
import { CLIENT_KEYS } from '../src/config/client-config.js';
import type { KeyDef } from '../src/config/loader.js';
import { SERVER_KEYS } from '../src/config/server-config.js';
import { parseDuration } from '../src/shared/duration.js';
import { apiApp } from './helpers/api-app.js';
import { tmpDir } from '../harness/procs.js';

// The docs against the code, where a machine can read both: the keys the config tables name exist, with the
// defaults they give; the API routes the docs name exist.

const read = (file: string) => readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8');

/** The rows of markdown tables that start with a key: "| `[section] key` ... | default | ...". */
function keyRows(text: string): Array<{ section: string; key: string; cell: string; line: string }> {
  const rows = [];
  for (const line of text.split('\n')) {
    const m = /^\| `\[([a-z-]+)\] ([a-z_]+)`(?: \(rport addition\))? \| ([^|]*) \|/.exec(line);
    if (m) rows.push({ section: m[1]!, key: m[2]!, cell: m[3]!.trim(), line });
  }
  return rows;
}

/** Whether a table cell that is one `value` says the key's default; cells in words are not checked. */
function sameDefault(def: KeyDef, cell: string): boolean | undefined {
  const m = /^`([^`]*)`$/.exec(cell);
  if (!m) return undefined;
  const v = m[1]!;
  switch (def.type) {
    case 'duration': case 'seconds': return parseDuration(v) === def.default;
    // RPort's list form of a table: [] is the empty one.
    case 'table': return (v === '[]' || v === '{}') && Object.keys(def.default as object).length === 0;
    case 'int': return Number(v) === def.default;
    case 'bool': return v === String(def.default);
    case 'strings': return JSON.stringify(JSON.parse(v)) === JSON.stringify(def.default);
    default: return v === def.default;
  }
}

function checkTable(text: string, defs: KeyDef[], where: string): number {
  let checked = 0;
  for (const row of keyRows(text)) {
    const def = defs.find((d) => d.section === row.section && d.key === row.key);
    assert.ok(def, `${where} names [${row.section}] ${row.key}, which is not in the key tables:\n${row.line}`);
    const same = sameDefault(def, row.cell);
    if (same === undefined) continue;
    assert.ok(same, `${where} gives [${row.section}] ${row.key} the default ${row.cell}; the code has ${JSON.stringify(def.default)}`);
    checked++;
  }
  return checked;
}

test("the README's config tables name keys that exist, with the code's defaults", () => {
  const readme = read('README.md');
  const client = readme.slice(readme.indexOf('### rport.conf'), readme.indexOf('### rportd.conf'));
  const server = readme.slice(readme.indexOf('### rportd.conf'), readme.indexOf('## Tunnels'));
  assert.ok(checkTable(client, CLIENT_KEYS, 'README.md (rport.conf)') >= 10);
  assert.ok(checkTable(server, SERVER_KEYS, 'README.md (rportd.conf)') >= 10);
});

test("docs/security.md's limit tables name keys that exist, with the code's defaults", () => {
  assert.ok(checkTable(read('docs/security.md'), SERVER_KEYS, 'docs/security.md') >= 5);
});

test('the API routes the docs name exist', async (t) => {
  const { app } = apiApp(tmpDir(t));
  t.after(() => app.close());
  await app.ready();
  // The README's route table is under /api/v1, as its text says; the dashboard's files and /metrics are not.
  const absolute = (path: string) => (/^\/(api\/|metrics|dashboard|$)/.test(path) ? path : `/api/v1${path}`);
  const shape = (path: string) => absolute(path).replace(/\[.*$|\?.*$/, '').replace(/\{[^}]+\}|:[a-z_]+/g, ':').replace(/\/$/, '');
  const known = new Set(apiRoutes(app).map((r) => `${r.method} ${shape(r.url)}`));
  let checked = 0;
  for (const file of ['README.md', 'docs/security.md', 'docs/commands.md', 'docs/cluster.md']) {
    for (const m of read(file).matchAll(/`(GET|POST|PUT|DELETE|PATCH) (\/[^`\s]+)`/g)) {
      // "/clients/{id}/commands|scripts" names two routes.
      const [base, last] = [m[2]!.slice(0, m[2]!.lastIndexOf('/') + 1), m[2]!.slice(m[2]!.lastIndexOf('/') + 1)];
      for (const path of last.split('|').map((l) => base + l)) {
        const route = `${m[1]} ${shape(path)}`;
        // This app has no cluster, which /api/v1/cluster needs: test/cluster.test.ts calls it on real nodes.
        if (/^[A-Z]+ \/api\/v1\/cluster/.test(route)) continue;
        assert.ok(known.has(route), `${file} names ${m[1]} ${path}, which the API does not have`);
        checked++;
      }
    }
  }
  assert.ok(checked >= 5, `only ${checked} routes found in the docs`);
});
