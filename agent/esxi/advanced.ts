// `esxcli system settings advanced list -o PATH`: one advanced option as an untitled block.
// Field list and order from a real ESXi 5.0 capture (`-o /VMFS3/EnableBlockDelete`, see
// test/fixtures/esxcli/SOURCES.txt):
//
//      Path: /Net/BlockGuestBPDU
//      Type: integer
//      Int Value: 0
//      Default Int Value: 0
//      Min Value: 0
//      Max Value: 1
//      String Value:
//      Default String Value:
//      Valid Characters:
//      Description: Block guest sourced BPDU frames
//
// Newer releases add lines; they are kept in `extra`, never an error. The agent reads exactly one
// option today, /Net/BlockGuestBPDU (1 = the vSwitch drops BPDUs sent by guests, so a VM that
// bridges cannot get the host's uplinks shut by BPDU guard upstream; STIG ESXI-70-000058).
import { entryMap, parseUntitledBlocks } from './kv.js';
import { fail, ok, setOwn, show, type Result } from './result.js';

export const BLOCK_GUEST_BPDU_PATH = '/Net/BlockGuestBPDU';

export interface AdvancedInt {
  path: string;
  intValue: number;
  defaultIntValue: number;
  minValue: number | null;
  maxValue: number | null;
  description: string | null;
  /** Lines this parser does not interpret, raw. */
  extra: Record<string, string>;
}

const KNOWN = new Set(['Path', 'Type', 'Int Value', 'Default Int Value', 'Min Value', 'Max Value', 'Description']);

/** Integer options are signed 32-bit in the vSphere API (OptionValue of type int). */
function int32(raw: string): number | null {
  if (!/^-?[0-9]{1,10}$/.test(raw)) return null;
  const n = Number(raw);
  return n >= -0x80000000 && n <= 0x7fffffff ? n : null;
}

/**
 * The integer option `path` from the output, which must hold exactly one block for it. A block
 * for another path, a string-typed option or a second block for the same path is an error: it
 * would mean the command that ran was not the one asked for.
 */
export function parseAdvancedInt(text: unknown, path: string): Result<AdvancedInt> {
  const blocks = parseUntitledBlocks(text, 'Path');
  if (!blocks.ok) return blocks;
  if (blocks.value.length === 0) return fail(`no option block in the output (expected ${show(path)})`);
  const mine = blocks.value.filter((b) => entryMap(b).get('Path')?.value === path);
  if (mine.length === 0) {
    const first = blocks.value[0]!;
    const got = entryMap(first).get('Path')?.value;
    return fail(got === undefined ? 'option block has no Path line' : `output is for ${show(got)}, not ${show(path)}`, first.line);
  }
  if (mine.length > 1) return fail(`${show(path)} listed twice`, mine[1]!.line);
  const b = mine[0]!;
  const e = entryMap(b);
  const type = e.get('Type');
  if (!type) return fail(`${path} has no Type line`, b.line);
  if (type.value !== 'integer') return fail(`${path} is of type ${show(type.value)}, expected "integer"`, type.line);

  const num = (k: string, required: boolean): Result<number | null> => {
    const x = e.get(k);
    if (!x || (x.value === '' && !required)) return required ? fail(`${path} has no ${k} line`, b.line) : ok(null);
    const n = int32(x.value);
    return n === null ? fail(`${k} is not a 32-bit integer: ${show(x.value)}`, x.line) : ok(n);
  };
  const iv = num('Int Value', true);
  if (!iv.ok) return iv;
  const dv = num('Default Int Value', true);
  if (!dv.ok) return dv;
  const mn = num('Min Value', false);
  if (!mn.ok) return mn;
  const mx = num('Max Value', false);
  if (!mx.ok) return mx;
  const extra: Record<string, string> = {};
  for (const x of b.entries) if (!KNOWN.has(x.key)) setOwn(extra, x.key, x.value);
  const d = e.get('Description')?.value;
  return ok({
    path,
    intValue: iv.value!,
    defaultIntValue: dv.value!,
    minValue: mn.value,
    maxValue: mx.value,
    description: d === undefined || d === '' ? null : d,
    extra,
  });
}

/** BlockGuestBPDU as the inventory holds it: any non-zero value blocks (the option's range is 0-1). */
export function blockGuestBpduOn(a: AdvancedInt): boolean {
  return a.intValue !== 0;
}
