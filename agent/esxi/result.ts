// Shared plumbing for the pure ESXi output parsers: a Result that never throws, text split into
// numbered lines, and decimal counters that say when a double can no longer hold them exactly.

/** What every parser returns: data, or why not and where (1-based line in the input text). */
export type Result<T> = { ok: true; value: T } | { ok: false; error: string; line?: number };

export function ok<T>(value: T): Result<T> {
  return { ok: true, value };
}

export function fail<T = never>(error: string, line?: number): Result<T> {
  return line === undefined ? { ok: false, error } : { ok: false, error, line };
}

/**
 * Input as lines without terminators. Output fetched over SSH with a pty comes with CRLF, so a
 * trailing \r is dropped; nothing else is touched (column positions must stay intact).
 * Returns [] for non-string input, so parsers fed garbage by a caller still do not throw.
 */
export function toLines(text: unknown): string[] {
  if (typeof text !== 'string') return [];
  return text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
}

/** Largest integer a double holds exactly (2^53 - 1). */
export const MAX_EXACT = Number.MAX_SAFE_INTEGER;

/**
 * A counter as printed by ESXi: unsigned decimal digits only (no sign, no separators, no
 * exponent). Above 2^53 - 1 the double is rounded to the nearest representable value, so
 * `exact` is false. The error is at most half the spacing of doubles there (1 at 2^54, 1024 at
 * 2^63), i.e. negligible for rates over 64-bit byte counters, but not "the" value: callers that
 * compare for equality or journal the number must know. ESXi counters only clear on reboot or
 * driver reload (Broadcom KB 341594), so byte counters on a busy 100 Gb/s uplink pass 2^53 in
 * about a week (2^53 B / 12.5 GB/s ~ 8.3 days).
 */
export function parseCounter(raw: string): { value: number; exact: boolean } | null {
  if (!/^[0-9]{1,20}$/.test(raw)) return null;
  // u64 max is 18446744073709551615 (20 digits); anything above cannot be a 64-bit counter.
  if (raw.length === 20 && raw > '18446744073709551615') return null;
  const value = Number(raw);
  return { value, exact: value <= MAX_EXACT };
}

/** Small non-negative integers (MTU, port counts, VLAN IDs): digits only, exact. */
export function parseSmallInt(raw: string, max: number): number | null {
  if (!/^[0-9]{1,10}$/.test(raw)) return null;
  const n = Number(raw);
  return n <= max ? n : null;
}

/** Quote a value for an error message without letting control characters into logs. */
export function show(s: string, max = 60): string {
  const cut = s.length > max ? `${s.slice(0, max)}...` : s;
  return JSON.stringify(cut);
}

/**
 * Set an own enumerable property even for keys like "__proto__": parsed keys come from the text,
 * and a plain assignment would silently change the object's prototype instead.
 */
export function setOwn<V>(obj: Record<string, V>, key: string, value: V): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}
