import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { apiRoutes } from '../src/api/api-server.js';
import { CLIENT_KEYS } from '../src/config/client-config.js';
import type { KeyDef } from '../src/config/loader.js';
import { RPORT_CLIENT_NAMES, RPORT_SERVER_NAMES } from '../src/config/rport-names.js';
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
    case 'duration':
    case 'seconds':
      return parseDuration(v) === def.default;
    // RPort's list form of a table: [] is the empty one.
    case 'table':
      return (v === '[]' || v === '{}') && Object.keys(def.default as object).length === 0;
    case 'int':
      return Number(v) === def.default;
    case 'bool':
      return v === String(def.default);
    case 'strings':
      return JSON.stringify(JSON.parse(v)) === JSON.stringify(def.default);
    default:
      return v === def.default;
  }
}

function checkTable(text: string, defs: KeyDef[], where: string): number {
  let checked = 0;
  for (const row of keyRows(text)) {
    const def = defs.find((d) => d.section === row.section && d.key === row.key);
    assert.ok(def, `${where} names [${row.section}] ${row.key}, which is not in the key tables:\n${row.line}`);
    const same = sameDefault(def, row.cell);
    if (same === undefined) continue;
    assert.ok(
      same,
      `${where} gives [${row.section}] ${row.key} the default ${row.cell}; the code has ${JSON.stringify(def.default)}`,
    );
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
  const shape = (path: string) =>
    absolute(path)
      .replace(/\[.*$|\?.*$/, '')
      .replace(/\{[^}]+\}|:[a-z_]+/g, ':')
      .replace(/\/$/, '');
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

test('the files the docs name exist: relative links, repository paths in backticks, and the config a README command reads (made earlier in its block)', () => {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const docs = [
    'README.md',
    'DEVELOPERS.md',
    'BENCHMARKS.md',
    ...readdirSync(join(root, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => `docs/${f}`),
  ].filter((f) => existsSync(join(root, f)));
  // Written by a run, not kept in the checkout.
  const madeByRuns = new Set(['test/fuzz/crashes/']);
  let checked = 0;
  for (const file of docs) {
    const text = read(file);
    for (const [, link] of text.matchAll(/\]\(([^)\s#]+)(?:#[^)]*)?\)/g)) {
      if (/^[a-z]+:/.test(link!)) continue;
      assert.ok(
        existsSync(join(root, dirname(file), link!)),
        `${file} links to ${link}, which the checkout does not have`,
      );
      checked++;
    }
    for (const [, path] of text.matchAll(
      /`((?:packaging|docs|scripts|test|src|bench|addons|patches|\.ci)\/[^`\s*<]*)`/g,
    )) {
      if (madeByRuns.has(path!)) continue;
      assert.ok(existsSync(join(root, path!)), `${file} names ${path}, which the checkout does not have`);
      checked++;
    }
  }
  // A newcomer runs the README's commands in the checkout: a -c FILE there is in it, or made before in the
  // same block (cp SRC ., rport init -c FILE).
  for (const [, block] of read('README.md').matchAll(/```sh\n([\s\S]*?)```/g)) {
    const made = new Set<string>();
    for (const line of block!.split('\n')) {
      const cp = /\bcp (\S+) (\S+)/.exec(line);
      if (cp) made.add(cp[2] === '.' ? basename(cp[1]!) : cp[2]!);
      for (const [, conf] of line.matchAll(/ -c (\S+)/g)) {
        if (conf!.startsWith('/')) continue;
        if (/\binit\b/.test(line)) made.add(conf!);
        else
          assert.ok(
            made.has(conf!) || existsSync(join(root, conf!)),
            `README.md runs "${line.trim()}", but a checkout has no ${conf} and the block does not make it`,
          );
        checked++;
      }
    }
  }
  assert.ok(checked >= 20, `only ${checked} names checked`);
});

test("docs/migrating.md's not-implemented names are ones rportd and rport accept and ignore (RPort's documented names outside the key tables), not refused", () => {
  const text = read('docs/migrating.md');
  const start = text.indexOf('**Not implemented yet**');
  assert.ok(start >= 0, 'docs/migrating.md has its "Not implemented yet" paragraph');
  // The list ends with the sections; what follows is about other names.
  const end = text.indexOf('`[plus-*]`.', start);
  assert.ok(end > start, 'the list ends with `[plus-*]`.');
  const paragraph = text.slice(start, end);
  const implemented = (section: string, key: string) =>
    [...CLIENT_KEYS, ...SERVER_KEYS].some((d) => d.section === section && d.key === key);
  const documented = (section: string, key?: string) =>
    [RPORT_CLIENT_NAMES, RPORT_SERVER_NAMES].some((n) => {
      const keys = n[section];
      return keys !== undefined && (key === undefined || keys === '*' || keys.includes(key));
    });
  let checked = 0;
  for (const [, name] of paragraph.matchAll(/`([^`]+)`/g)) {
    const withSection = /^\[([a-z-]+)\](?: ([a-z_]+))?/.exec(name!);
    if (withSection) {
      const [, section, key] = withSection;
      assert.ok(
        documented(section!, key),
        `docs/migrating.md names ${name} as ignored, but RPort's names do not have it: rport refuses it`,
      );
      if (key)
        assert.ok(
          !implemented(section!, key),
          `docs/migrating.md names ${name} as not implemented and ignored, but [${section}] ${key} is in the key tables (it is read, and a value rport does not take is refused)`,
        );
      // "in `[api]`: ..." introduces the keys after it; a section named alone is ignored as a whole.
      else if (!paragraph.includes(`\`${name}\`:`))
        assert.ok(
          ![...CLIENT_KEYS, ...SERVER_KEYS].some((d) => d.section === section),
          `docs/migrating.md names the section ${name} as ignored, but rport reads keys of it`,
        );
      checked++;
    } else if (/^[a-z_]+$/.test(name!)) {
      const sections = [
        ...new Set(
          [RPORT_CLIENT_NAMES, RPORT_SERVER_NAMES].flatMap((n) =>
            Object.keys(n).filter((s) => Array.isArray(n[s]) && (n[s] as string[]).includes(name!)),
          ),
        ),
      ];
      assert.ok(
        sections.some((s) => !implemented(s, name!)),
        `docs/migrating.md names ${name} as ignored, but no section of RPort's names has it unimplemented`,
      );
      checked++;
    }
  }
  assert.ok(checked >= 20, `only ${checked} names checked`);
});
