// A monitor child's stderr as a condition, not a stream: `bridge monitor fdb` prints "No buffer
// space available" each time its netlink socket overflows, ~20 lines/s for as long as a storm
// lasts. People need to know that it started (FDB events are being lost), what it said, and
// when it stopped, not every line. So the first line is logged at once, later lines only
// counted (a new text is logged once, up to MAX_TEXTS), and one line says when the child has
// been quiet on stderr for quietMs, with how many lines and how long.

export interface StderrCondition {
  /** A chunk the child wrote to stderr. */
  chunk(text: string): void;
  /** Ends an open condition now (the child exited or is closed): logs its end line. */
  flush(): void;
}

const MAX_TEXTS = 5;

export function stderrCondition(opts: {
  name: string;
  warn?: (obj: object, msg: string) => void;
  quietMs?: number;
  now?: () => number;
}): StderrCondition {
  const quietMs = opts.quietMs ?? 2000;
  const now = opts.now ?? Date.now;
  let open: { since: number; last: number; lines: number; texts: Set<string> } | null = null;
  let timer: NodeJS.Timeout | null = null;

  function end(): void {
    if (timer) clearTimeout(timer);
    timer = null;
    if (!open) return;
    const c = open;
    open = null;
    if (c.lines > 1) opts.warn?.({ lines: c.lines, forMs: c.last - c.since }, `${opts.name} stderr stopped`);
  }

  function check(): void {
    timer = null;
    if (!open) return;
    const idle = now() - open.last;
    if (idle >= quietMs) end();
    else arm(quietMs - idle);
  }

  function arm(ms: number): void {
    if (!timer) timer = setTimeout(check, ms).unref();
  }

  return {
    chunk(text) {
      const t = now();
      for (const raw of text.split('\n')) {
        const line = raw.trim().slice(0, 200);
        if (!line) continue;
        if (!open) {
          open = { since: t, last: t, lines: 1, texts: new Set([line]) };
          opts.warn?.({ stderr: line }, `${opts.name} stderr`);
          continue;
        }
        open.lines++;
        open.last = t;
        if (open.texts.size < MAX_TEXTS && !open.texts.has(line)) {
          open.texts.add(line);
          opts.warn?.({ stderr: line }, `${opts.name} stderr`);
        }
      }
      if (open) arm(quietMs);
    },
    flush: end,
  };
}
