import { ApiError, notImplemented } from './errors.js';

/** RPort's page size when none is asked for, and the most one page may hold. */
export const DEFAULT_PAGE_LIMIT = 50;
export const MAX_PAGE_LIMIT = 500;

export type RawQuery = Record<string, string | string[] | undefined>;

/**
 * The matching steps one request's filters may take over a whole list: patterns x text in the worst case,
 * so a request with many long `*a...ab` patterns over long tags could hold the event loop for seconds
 * (every other request waiting); about 0.2-0.4 s of work here. Ordinary filters take a step or a few per character.
 */
export const MAX_FILTER_STEPS = 20_000_000;

/** What a list route accepts of RPort's forms. */
export interface ListForm {
  /** The name in fields[...], e.g. "clients". */
  resource: string;
  /** Fields filter[...] may name. */
  filterable: readonly string[];
  /** Fields RPort documents that this server does not have, with the reason: named in a 400. */
  missing?: Readonly<Record<string, string>>;
  /** Fields sort may name. */
  sortable?: readonly string[];
  /** Fields fields[resource] may name; without it, fields[...] is refused. */
  fieldNames?: readonly string[];
  /** Plain parameters of rport's own that the route reads itself. */
  own?: readonly string[];
}

interface Filter {
  fields: string[];
  all: boolean;
  /** Lower-cased, with `*` wildcards. */
  patterns: string[];
}

export interface ListQuery {
  filters: Filter[];
  sort: Array<{ field: string; desc: boolean }>;
  fields: string[] | undefined;
  limit: number;
  offset: number;
}

const bad = (message: string) => new ApiError(400, 'bad_request', message);

/**
 * Whether `text` matches `pattern`, where `*` is any run of characters and the rest is literal (both
 * lower-cased by the caller). Not a RegExp: a pattern like `*a*a*a*...b` would backtrack for ages there;
 * this takes at most pattern x text steps, each charged to `steps` (false once it is spent).
 */
export function globMatch(pattern: string, text: string, steps = { left: Infinity }): boolean {
  let p = 0;
  let t = 0;
  let star = -1;
  let resume = 0;
  while (t < text.length) {
    if (--steps.left < 0) return false;
    if (p < pattern.length && pattern[p] === '*') {
      star = p++;
      resume = t;
    } else if (p < pattern.length && pattern[p] === text[t]) {
      p++;
      t++;
    } else if (star >= 0) {
      p = star + 1;
      t = ++resume;
    } else return false;
  }
  while (pattern[p] === '*') p++;
  return p === pattern.length;
}

function checkField(form: ListForm, field: string, allowed: readonly string[], what: string): void {
  if (allowed.includes(field)) return;
  const why = form.missing?.[field];
  if (why) throw notImplemented(`${what} on "${field}"`, why);
  throw bad(`${what} names unknown field "${field}": use one of ${allowed.join(', ')}`);
}

function pageNumber(key: string, value: string, min: number, max: number): number {
  if (!/^\d{1,9}$/.test(value) || Number(value) < min || Number(value) > max)
    throw bad(`query parameter ${key} = "${value}" must be a whole number from ${min} to ${max}`);
  return Number(value);
}

/**
 * RPort's list parameters: page[limit] and page[offset] (50 by default, at most 500), filter[FIELD] and
 * filter[F1|F2] with `*` wildcards and comma (or `or(...)`) and `and(...)` lists, sort (`-field` descending),
 * fields[RESOURCE]. Anything else, except the route's own parameters, is refused with a 400 that names it.
 */
export function parseListQuery(query: RawQuery, form: ListForm): ListQuery {
  const q: ListQuery = { filters: [], sort: [], fields: undefined, limit: DEFAULT_PAGE_LIMIT, offset: 0 };
  for (const [key, raw] of Object.entries(query)) {
    if (raw === undefined) continue;
    if (Array.isArray(raw))
      throw bad(
        `query parameter ${key} is given ${raw.length} times: give it once (a filter takes a comma-separated list)`,
      );
    const value = raw;
    if (form.own?.includes(key)) continue;
    if (key === 'page[limit]') q.limit = pageNumber(key, value, 1, MAX_PAGE_LIMIT);
    else if (key === 'page[offset]') q.offset = pageNumber(key, value, 0, 999_999_999);
    else if (key === 'sort') {
      if (!form.sortable) throw bad(`query parameter sort: this list cannot be sorted`);
      q.sort = value
        .split(',')
        .filter(Boolean)
        .map((s) => {
          const field = s.replace(/^-/, '');
          checkField(form, field, form.sortable!, 'sort');
          return { field, desc: s.startsWith('-') };
        });
    } else if (key.startsWith('filter[') && key.endsWith(']')) {
      const names = key.slice(7, -1).split('|');
      const fields = names.includes('*') ? [...form.filterable] : names;
      for (const f of fields) checkField(form, f, form.filterable, `filter[${key.slice(7, -1)}]`);
      const m = /^(or|and)\((.*)\)$/.exec(value);
      const terms = (m ? m[2]! : value)
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      if (terms.length === 0)
        throw bad(`query parameter ${key} has no value: give one or more values, e.g. ${key}=a*,b`);
      q.filters.push({ fields, all: m?.[1] === 'and', patterns: terms.map((x) => x.toLowerCase()) });
    } else if (key.startsWith('fields[') && key.endsWith(']')) {
      const resource = key.slice(7, -1);
      if (resource !== form.resource || !form.fieldNames)
        throw bad(`query parameter ${key}: this list has fields[${form.resource}] only`);
      q.fields = value
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      for (const f of q.fields) checkField(form, f, form.fieldNames, `fields[${resource}]`);
    } else {
      const known = [
        'page[limit]',
        'page[offset]',
        'filter[FIELD]',
        ...(form.sortable ? ['sort'] : []),
        ...(form.fieldNames ? [`fields[${form.resource}]`] : []),
        ...(form.own ?? []),
      ];
      throw bad(`query parameter "${key}" is not known here: use ${known.join(', ')}`);
    }
  }
  return q;
}

const text = (v: unknown) => (v === null || v === undefined ? '' : String(v));

function matches(f: Filter, item: Record<string, unknown>, steps: { left: number }): boolean {
  const values = f.fields.flatMap((field) => {
    const v = item[field];
    return Array.isArray(v) ? v.map(text) : [text(v)];
  });
  const hit = (p: string) => values.some((v) => globMatch(p, v.toLowerCase(), steps));
  const found = f.all ? f.patterns.every(hit) : f.patterns.some(hit);
  if (steps.left < 0) {
    throw bad(
      `the filters of this request take more than ${MAX_FILTER_STEPS.toLocaleString('en')} matching steps over this list (the limit per request, patterns x text): use fewer or shorter patterns with fewer "*"`,
    );
  }
  return found;
}

function compare(a: unknown, b: unknown): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return text(a).localeCompare(text(b));
}

/** Filters, sorts, counts and cuts the list as the query says; `count` is the number before the cut. */
export function applyListQuery<T extends Record<string, unknown>>(
  items: T[],
  q: ListQuery,
): { data: Array<Partial<T>>; meta: { count: number } } {
  const steps = { left: MAX_FILTER_STEPS };
  const kept = items.filter((item) => q.filters.every((f) => matches(f, item, steps)));
  if (q.sort.length) {
    kept.sort((a, b) => {
      for (const s of q.sort) {
        const c = compare(a[s.field], b[s.field]);
        if (c) return s.desc ? -c : c;
      }
      return 0;
    });
  }
  const page = kept.slice(q.offset, q.offset + q.limit);
  const fields = q.fields;
  const data = fields ? page.map((item) => Object.fromEntries(fields.map((f) => [f, item[f]])) as Partial<T>) : page;
  return { data, meta: { count: kept.length } };
}
