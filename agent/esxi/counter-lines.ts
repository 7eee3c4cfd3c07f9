// The body shared by esxcli's counter outputs (`nic stats get`, `port stats get`): one
// "Label: value" line per cumulative counter under a header line. Pure.
import { kvLine } from './kv.js';
import { fail, ok, parseCounter, setOwn, show, type Result } from './result.js';

export type CounterValue = { value: number; exact: boolean };

/**
 * Read lines[from..] as counters: known labels into `values` by key, other numeric labels into
 * `extra`. A line that is not "Label: value" (or not indented, when `indented`), a label written
 * twice or a value that is not an unsigned 64-bit counter fails, naming the 1-based line.
 */
export function readCounterLines<K extends string>(
  lines: readonly string[],
  from: number,
  byLabel: ReadonlyMap<string, K>,
  indented = false,
): Result<{ values: Map<K, CounterValue>; extra: Record<string, number> }> {
  const values = new Map<K, CounterValue>();
  const extra: Record<string, number> = {};
  const seen = new Set<string>();
  for (let i = from; i < lines.length; i++) {
    const l = lines[i]!;
    if (l.trim() === '') continue;
    const kv = kvLine(l);
    // "..." (an elided transcription), a second header or anything else is not a counter line.
    if (!kv || (indented && !/^\s/.test(l))) return fail(`not ${indented ? 'an indented' : 'a'} "Label: value" line: ${show(l.trim())}`, i + 1);
    if (seen.has(kv.key)) return fail(`${show(kv.key)} twice`, i + 1);
    seen.add(kv.key);
    const c = parseCounter(kv.value);
    if (!c) return fail(`${kv.key} is not an unsigned 64-bit counter: ${show(kv.value)}`, i + 1);
    const key = byLabel.get(kv.key);
    if (key) values.set(key, c);
    else setOwn(extra, kv.key, c.value);
  }
  return ok({ values, extra });
}

/** Every key's value (NaN when absent), which were inexact or missing; fails when a required one is absent. */
export function collectCounters<K extends string>(
  keys: readonly K[],
  required: readonly K[],
  values: ReadonlyMap<K, CounterValue>,
): Result<{ counters: Record<K, number>; inexact: K[]; missing: K[] }> {
  const missingRequired = required.filter((k) => !values.has(k));
  if (missingRequired.length > 0) return fail(`missing counters: ${missingRequired.join(', ')}`);
  const counters = {} as Record<K, number>;
  const inexact: K[] = [];
  const missing: K[] = [];
  for (const k of keys) {
    const v = values.get(k);
    counters[k] = v ? v.value : NaN;
    if (!v) missing.push(k);
    else if (!v.exact) inexact.push(k);
  }
  return ok({ counters, inexact, missing });
}
