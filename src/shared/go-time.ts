import { performance } from 'node:perf_hooks';

/** Now, in microseconds since the epoch (Date has only milliseconds; Go prints finer times). */
export function nowMicros(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

/**
 * Go's RFC3339Nano in local time: "2022-08-15T10:37:25.643839+02:00", trailing zeros of the fraction
 * dropped, and "Z" when the local offset is zero, exactly as Go's time.Time marshals.
 */
export function goTimestamp(micros: number): string {
  const d = new Date(Math.floor(micros / 1000));
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const frac = String(micros % 1_000_000)
    .padStart(6, '0')
    .replace(/0+$/, '');
  const off = -d.getTimezoneOffset();
  const zone = off === 0 ? 'Z' : `${off > 0 ? '+' : '-'}${p(Math.floor(Math.abs(off) / 60))}:${p(Math.abs(off) % 60)}`;
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}${frac ? '.' + frac : ''}${zone}`;
}
