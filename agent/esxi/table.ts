// Fixed-width text tables as esxcli and esxcfg-* print them, parsed by their header row (and the
// dashes row under it when there is one), never by hard-coded offsets: esxcli sizes each column to
// its widest value, so one `vmnic10` or a longer driver name shifts every column to its right. A
// public parser that sliced fixed offsets turned "vSwitch0" into "Switch0" (see
// test/fixtures/esxcli/SOURCES.txt); this one finds the offsets in the text it is given.
//
//   Name                Virtual Switch  Active Clients  VLAN ID     <- header: names left-aligned
//   ------------------  --------------  --------------  -------     <- dashes: one run per column
//   Management Network  vSwitch0                     1        0     <- cells; numbers right-aligned
//
// Column i spans from the start of its dash run (or header name) to the start of column i+1; the
// last column runs to the end of the line, so it may hold spaces (Description, port group names
// in a middle column are fine too: boundaries come from the header, not from whitespace).
import { fail, ok, show, toLines, type Result } from './result.js';

export interface TableRow {
  /** 1-based line number in the input, for error messages. */
  line: number;
  /** One trimmed cell per header, '' when the row is shorter. */
  cells: string[];
}

export interface Table {
  headers: string[];
  /** Column start offsets (characters) found in the text. */
  starts: number[];
  /** Whether a dashes row gave the offsets (esxcli) or the header words did (esxcfg-nics -l). */
  dashes: boolean;
  rows: TableRow[];
}

export interface TableOptions {
  /**
   * Header names that contain a space, to keep together when there is no dashes row
   * (esxcfg-nics -l prints "MAC Address" but also "Link Speed", which is two columns).
   */
  multiWordHeaders?: readonly string[];
}

const DASHES = /^ *-+( +-+)* *$/;

function isBlank(l: string): boolean {
  return l.trim() === '';
}

function isSpace(ch: string | undefined): boolean {
  return ch === undefined || ch === ' ';
}

/** Start offsets of runs of non-space characters (dash runs or header words). */
function runStarts(l: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < l.length; i++) if (l[i] !== ' ' && (i === 0 || l[i - 1] === ' ')) out.push(i);
  return out;
}

/** Header words grouped into column names, keeping the known multi-word names together. */
function headerStarts(header: string, multi: readonly string[]): number[] {
  const byLength = [...multi].sort((a, b) => b.length - a.length);
  const out: number[] = [];
  let skipUntil = -1;
  for (const p of runStarts(header)) {
    if (p < skipUntil) continue;
    out.push(p);
    const name = byLength.find((m) => header.startsWith(m, p) && isSpace(header[p + m.length]));
    skipUntil = name ? p + name.length : -1;
  }
  return out;
}

/**
 * A row must not run across a column boundary: that would mean the offsets are wrong for this row
 * (a value wider than its column, a wrapped line, a prompt, another command's output). Reported
 * with its line rather than sliced into wrong cells.
 */
function crossing(l: string, starts: readonly number[]): number {
  if (starts[0]! > 0 && l.slice(0, starts[0]).trim() !== '') return 0;
  for (let i = 1; i < starts.length; i++) {
    const p = starts[i]!;
    if (!isSpace(l[p - 1]) && !isSpace(l[p])) return i;
  }
  return -1;
}

function cellsOf(l: string, starts: readonly number[]): string[] {
  return starts.map((s, i) => l.slice(s, i + 1 < starts.length ? starts[i + 1] : undefined).trim());
}

export function parseTable(text: unknown, opts: TableOptions = {}): Result<Table> {
  if (typeof text !== 'string') return fail('output is not text');
  const lines = toLines(text);
  const h = lines.findIndex((l) => !isBlank(l));
  if (h < 0) return fail('empty output');
  const header = lines[h]!;
  if (header.includes('\t')) return fail('tab in header row: column offsets would be ambiguous', h + 1);
  const dashLine = lines[h + 1];
  const dashes = dashLine !== undefined && DASHES.test(dashLine);
  const starts = dashes ? runStarts(dashLine) : headerStarts(header, opts.multiWordHeaders ?? []);

  const headers = cellsOf(header, starts);
  const badHeader = crossing(header, starts);
  if (badHeader >= 0 || headers.some((n) => n === '')) {
    return fail('header row does not line up with its columns', h + 1);
  }
  if (new Set(headers).size !== headers.length) return fail('duplicate column name in header row', h + 1);

  const rows: TableRow[] = [];
  for (let i = h + (dashes ? 2 : 1); i < lines.length; i++) {
    const l = lines[i]!;
    if (isBlank(l)) continue;
    if (l.includes('\t')) return fail('tab in table row', i + 1);
    const c = crossing(l, starts);
    if (c === 0) return fail(`text before the first column (${show(l.trim())})`, i + 1);
    if (c > 0) {
      return fail(`row runs across the boundary between columns ${show(headers[c - 1]!)} and ${show(headers[c]!)}`, i + 1);
    }
    rows.push({ line: i + 1, cells: cellsOf(l, starts) });
  }
  return ok({ headers, starts, dashes, rows });
}

/** Indices of the named columns, in the order asked; fails naming the first one missing. */
export function columns(table: Table, names: readonly string[]): Result<number[]> {
  const idx: number[] = [];
  for (const n of names) {
    const i = table.headers.indexOf(n);
    if (i < 0) return fail(`column ${show(n)} missing (header has ${table.headers.map((x) => show(x)).join(', ')})`);
    idx.push(i);
  }
  return ok(idx);
}
