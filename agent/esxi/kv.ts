// "Key: value" blocks, the other esxcli output shape (vswitch standard list, vm port list, nic
// stats get): an optional unindented title line, then indented "Key: value" lines; values may be
// empty ("DVPort ID:") or end in spaces ("Beacon Required By: "), keys contain spaces, values
// contain colons (MAC addresses), so a line splits at its FIRST colon.
import { fail, ok, show, toLines, type Result } from './result.js';

export interface KvEntry {
  key: string;
  /** Trimmed value, '' when nothing follows the colon. */
  value: string;
  line: number;
}

export interface KvBlock {
  title: string | null;
  /** Line of the title, or of the first entry for untitled blocks. */
  line: number;
  entries: KvEntry[];
}

const KV = /^[ ]*([A-Za-z][A-Za-z0-9 ()/_.-]*?):(?:[ ](.*))?$/;

export function kvLine(l: string): { key: string; value: string } | null {
  const m = KV.exec(l);
  return m ? { key: m[1]!, value: (m[2] ?? '').trim() } : null;
}

/**
 * Titled blocks: each starts at an unindented line (vSwitch name), entries are indented.
 * Duplicate keys in one block are an error: they mean two blocks ran together.
 */
export function parseTitledBlocks(text: unknown): Result<KvBlock[]> {
  if (typeof text !== 'string') return fail('output is not text');
  const blocks: KvBlock[] = [];
  let cur: KvBlock | null = null;
  let keys = new Set<string>();
  const lines = toLines(text);
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (l.trim() === '') continue;
    if (!l.startsWith(' ')) {
      cur = { title: l.trim(), line: i + 1, entries: [] };
      keys = new Set();
      blocks.push(cur);
      continue;
    }
    const kv = kvLine(l);
    if (!kv) return fail(`not a "Key: value" line: ${show(l.trim())}`, i + 1);
    if (!cur) return fail('entry before any block title', i + 1);
    if (keys.has(kv.key)) return fail(`${show(kv.key)} twice in block ${show(cur.title ?? '')}`, i + 1);
    keys.add(kv.key);
    cur.entries.push({ ...kv, line: i + 1 });
  }
  return ok(blocks);
}

/**
 * Untitled blocks (vm port list): separated by blank lines, and a repeated `startKey` also starts a
 * new block in case the blank line was lost on the way.
 */
export function parseUntitledBlocks(text: unknown, startKey: string): Result<KvBlock[]> {
  if (typeof text !== 'string') return fail('output is not text');
  const blocks: KvBlock[] = [];
  let cur: KvBlock | null = null;
  let keys = new Set<string>();
  const lines = toLines(text);
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (l.trim() === '') {
      cur = null;
      continue;
    }
    const kv = kvLine(l);
    if (!kv) return fail(`not a "Key: value" line: ${show(l.trim())}`, i + 1);
    if (!cur || (kv.key === startKey && keys.has(startKey))) {
      cur = { title: null, line: i + 1, entries: [] };
      keys = new Set();
      blocks.push(cur);
    }
    if (keys.has(kv.key)) return fail(`${show(kv.key)} twice in one block`, i + 1);
    keys.add(kv.key);
    cur.entries.push({ ...kv, line: i + 1 });
  }
  return ok(blocks);
}

/** Entries of a block by key. */
export function entryMap(b: KvBlock): Map<string, KvEntry> {
  return new Map(b.entries.map((e) => [e.key, e]));
}
