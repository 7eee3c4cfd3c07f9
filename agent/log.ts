import { pino, type Logger } from 'pino';

export type { Logger };
export type LogFormat = 'json' | 'pretty';

/**
 * JSON lines to stdout (journald-friendly) by default. One child per component:
 * log.child({ component }). 'pretty' is for a terminal: one readable line per record.
 */
export function createLogger(level: string = process.env.STORMBREAKER_LOG_LEVEL ?? 'info', format: LogFormat = 'json'): Logger {
  const opts = { level, base: { app: 'stormbreaker' }, timestamp: pino.stdTimeFunctions.isoTime };
  if (format === 'json') return pino(opts);
  return pino(opts, { write: (line: string) => process.stdout.write(prettyLine(line)) });
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const SKIP = new Set(['level', 'time', 'msg', 'app', 'component', 'pid', 'hostname']);

/** One pino JSON line as `time LEVEL [component] msg key=value ...`. Pure. */
export function prettyLine(line: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.endsWith('\n') ? line : `${line}\n`;
  }
  const parts = [String(o.time ?? ''), (LEVELS[o.level as number] ?? String(o.level)).padEnd(5)];
  if (o.component) parts.push(`[${String(o.component)}]`);
  parts.push(String(o.msg ?? ''));
  for (const [k, v] of Object.entries(o)) {
    if (SKIP.has(k) || v === undefined) continue;
    parts.push(`${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  }
  return `${parts.join(' ')}\n`;
}

/** A logger that drops everything, for tools and tests that do not want output. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
