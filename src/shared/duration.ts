// Durations in Go's syntax ("3m", "1h30m", "250ms"), parsed into milliseconds and printed as Go's
// time.Duration.String() prints them, because state.json messages must read exactly like RPort's.

const UNIT_NS: Record<string, number> = {
  ns: 1,
  us: 1e3,
  µs: 1e3,
  μs: 1e3,
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};
const PART = /([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)/y;

/** Milliseconds, or undefined when the text is not a Go duration. */
export function parseDuration(text: string): number | undefined {
  let s = text.trim();
  let sign = 1;
  if (s.startsWith('-') || s.startsWith('+')) {
    if (s[0] === '-') sign = -1;
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') return undefined;
  let ns = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < s.length) {
    const m = PART.exec(s);
    if (!m || m[1] === '' || m[1] === '.') return undefined;
    ns += Number(m[1]) * UNIT_NS[m[2]!]!;
  }
  return (sign * ns) / 1e6;
}

function fraction(v: number, prec: number): [string, number] {
  let digits = '';
  let print = false;
  for (let i = 0; i < prec; i++) {
    const d = v % 10;
    print ||= d !== 0;
    if (print) digits = d + digits;
    v = Math.floor(v / 10);
  }
  return [print ? '.' + digits : '', v];
}

/** Go's time.Duration.String() for a count of nanoseconds. */
export function formatNanos(nanos: number): string {
  let u = Math.round(Math.abs(nanos));
  const neg = nanos < 0 && u !== 0 ? '-' : '';
  if (u < 1e9) {
    if (u === 0) return '0s';
    if (u < 1e3) return `${neg}${u}ns`;
    if (u < 1e6) {
      const [f, w] = fraction(u, 3);
      return `${neg}${w}${f}µs`;
    }
    const [f, w] = fraction(u, 6);
    return `${neg}${w}${f}ms`;
  }
  const [f, secs] = fraction(u, 9);
  u = secs;
  let out = `${u % 60}${f}s`;
  u = Math.floor(u / 60);
  if (u > 0) {
    out = `${u % 60}m${out}`;
    u = Math.floor(u / 60);
    if (u > 0) out = `${u}h${out}`;
  }
  return neg + out;
}

export function formatDuration(ms: number): string {
  return formatNanos(ms * 1e6);
}
