// Durations as operators type them: 500ms, 30s, 5m, 2h, 1d (one number, one unit). Pure.

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
/** A hold or a look back longer than a year is a typo, not an intent. */
const MAX_MS = 366 * 86_400_000;

/** Milliseconds, or null when `text` is not a duration (or not positive, or over a year). */
export function parseDuration(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(text);
  if (!m) return null;
  const ms = Number(m[1]) * UNIT_MS[m[2]!]!;
  return Number.isFinite(ms) && ms > 0 && ms <= MAX_MS ? Math.round(ms) : null;
}
