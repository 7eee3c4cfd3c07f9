// The counter stream: one remote shell loop per ESXi host, running on a session of the
// long-lived SSH connection. Pure: the script builder and an incremental parser.
//
// The agent paces the loop: it writes one tick number per sample to the loop's stdin, the loop
// answers with one block (every watched counter command, each framed by markers with its exit
// status). Pacing from this side needs no fractional `sleep` on ESXi's busybox, never lets the
// remote side run ahead, and makes a missing answer something we notice (stale), not a gap.
//
//   @@sb:<nonce>:begin:<tick>
//   @@sb:<nonce>:nic:vmnic0          then the command's stdout and stderr
//   @@sb:<nonce>:rc:0
//   @@sb:<nonce>:port:33554440       (VM ports, where watched)
//   @@sb:<nonce>:rc:0
//   @@sb:<nonce>:end:<tick>
//
// The nonce is random per stream, so output that happens to contain "@@sb" cannot forge a frame.
import { toArgv, type EsxOp } from './commands.js';
import { remoteLine } from './ssh-argv.js';

export type SectionKind = 'nic' | 'port';

/**
 * One watched item's key: `nic:vmnic0`, `port:33554440`. The stream's section markers, the rates'
 * lookup and the fuse plan's sample order all name items this way.
 */
export const itemKey = (kind: SectionKind, id: string): string => `${kind}:${id}`;

export interface StreamItem {
  kind: SectionKind;
  /** vmnic name, or vSwitch port ID (digits). */
  id: string;
  /** The counter command to run. */
  op: EsxOp;
}

export interface Section {
  kind: SectionKind;
  id: string;
  text: string;
  /** Exit status of the command; null when the block ended before its rc line. */
  rc: number | null;
}

export interface Block {
  tick: number;
  sections: Section[];
}

const NONCE_RE = /^[a-z0-9]{8,32}$/;
const ID_RE = /^[A-Za-z0-9]{1,20}$/;

/** The remote loop as one shell line (POSIX sh: ESXi's busybox ash, dash, bash). */
export function streamScript(nonce: string, items: readonly StreamItem[]): string {
  if (!NONCE_RE.test(nonce)) throw new Error(`bad stream nonce ${JSON.stringify(nonce)}`);
  if (items.length === 0) throw new Error('nothing to stream');
  const m = (s: string): string => `echo "@@sb:${nonce}:${s}"`;
  const parts: string[] = [];
  for (const it of items) {
    if (!ID_RE.test(it.id)) throw new Error(`bad stream item id ${JSON.stringify(it.id)}`);
    const argv = toArgv(it.op);
    if (!argv.ok) throw new Error(argv.error);
    // stderr joins stdout: vsish -p prints its banner there, and an error text belongs to the block.
    parts.push(`${m(itemKey(it.kind, it.id))}; ${remoteLine(argv.value)} 2>&1; ${m('rc:$?')}`);
  }
  // `read` fails at EOF (we closed stdin or the connection went): the loop, and the session, end.
  return `while read -r t; do case "$t" in *[!0-9]*|'') exit 2;; esac; ${m('begin:$t')}; ${parts.join('; ')}; ${m('end:$t')}; done`;
}

export interface StreamParser {
  /** Feed raw stdout; returns the blocks completed by this chunk (oldest first). */
  feed(chunk: string): Block[];
  /** Lines seen outside any block (should be none; kept for the log), drained. */
  takeNoise(): string[];
}

/** Largest block accepted (bytes of text): a runaway command cannot grow memory without bound. */
export const MAX_BLOCK_CHARS = 1 << 20;

export function createStreamParser(nonce: string): StreamParser {
  const prefix = `@@sb:${nonce}:`;
  let rest = '';
  let cur: { tick: number; sections: Section[]; size: number } | null = null;
  let sec: Section | null = null;
  let lines: string[] = [];
  let noise: string[] = [];

  const closeSection = (): void => {
    if (cur && sec) {
      sec.text = lines.join('\n');
      cur.sections.push(sec);
    }
    sec = null;
    lines = [];
  };

  function line(l: string, out: Block[]): void {
    if (l.startsWith(prefix)) {
      const [what, arg = ''] = splitOnce(l.slice(prefix.length));
      if (what === 'begin') {
        if (cur) noise.push(`block ${cur.tick} never ended`);
        cur = { tick: Number(arg), sections: [], size: 0 };
        sec = null;
        lines = [];
      } else if (what === 'end' && cur) {
        closeSection();
        if (Number(arg) === cur.tick) out.push({ tick: cur.tick, sections: cur.sections });
        else noise.push(`block ${cur.tick} ended as ${arg}`);
        cur = null;
      } else if ((what === 'nic' || what === 'port') && cur) {
        closeSection();
        sec = { kind: what, id: arg, text: '', rc: null };
      } else if (what === 'rc' && cur && sec) {
        const rc = Number(arg);
        sec.rc = Number.isInteger(rc) ? rc : null;
        closeSection();
      } else {
        noise.push(l);
      }
      return;
    }
    if (cur && sec) {
      cur.size += l.length + 1;
      if (cur.size > MAX_BLOCK_CHARS) {
        noise.push(`block ${cur.tick} larger than ${MAX_BLOCK_CHARS} chars: dropped`);
        cur = null;
        sec = null;
        lines = [];
        return;
      }
      lines.push(l);
    } else if (l.trim() !== '') {
      noise.push(l);
    }
  }

  return {
    feed(chunk: string): Block[] {
      const out: Block[] = [];
      rest += chunk;
      let i: number;
      while ((i = rest.indexOf('\n')) >= 0) {
        line(rest.slice(0, i).replace(/\r$/, ''), out);
        rest = rest.slice(i + 1);
      }
      if (rest.length > MAX_BLOCK_CHARS) {
        noise.push('line longer than the block limit: dropped');
        rest = '';
      }
      return out;
    },
    takeNoise(): string[] {
      const n = noise;
      noise = [];
      return n;
    },
  };
}

function splitOnce(s: string): [string, string] {
  const i = s.indexOf(':');
  return i < 0 ? [s, ''] : [s.slice(0, i), s.slice(i + 1)];
}
