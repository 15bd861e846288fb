import { existsSync, readFileSync, writeFileSync } from 'node:fs';

// BENCHMARKS.md is written by more than one command: `npm run bench` writes the whole file and keeps the
// sections the others marked with <!-- NAME: begin --> ... <!-- NAME: end -->; each of those replaces its own.
const MARKED = /<!-- ([^>]+): begin -->[\s\S]*?<!-- \1: end -->/g;

const read = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8') : '');

/** Writes `doc` over `file`, keeping the marked sections `file` had. */
export function writeKeepingSections(file: string, doc: string): void {
  const kept = read(file).match(MARKED) ?? [];
  writeFileSync(file, kept.length ? `${doc.trimEnd()}\n\n${kept.join('\n\n')}\n` : doc);
}

/** Puts one marked section (text without its markers) into `file`, replacing the old one or appending it. */
export function writeSection(file: string, name: string, text: string): string {
  const section = `<!-- ${name}: begin -->\n${text.trim()}\n<!-- ${name}: end -->`;
  const doc = read(file);
  const begin = doc.indexOf(`<!-- ${name}: begin -->`);
  const endMark = `<!-- ${name}: end -->`;
  writeFileSync(
    file,
    begin < 0
      ? `${doc.trimEnd()}\n\n${section}\n`
      : `${doc.slice(0, begin)}${section}${doc.slice(doc.indexOf(endMark) + endMark.length)}`,
  );
  return section;
}
