import { fstatSync } from 'node:fs';
import { pino, type Logger } from 'pino';

export type { Logger };
export type LogFormat = 'json' | 'pretty';

/**
 * JSON lines to stdout (journald-friendly) by default. One child per component:
 * log.child({ component }). 'pretty' is for a terminal: one readable line per record.
 */
export function createLogger(level: string = process.env.STORMBREAKER_LOG_LEVEL ?? 'info', format: LogFormat = 'json'): Logger {
  const opts = { level, base: { app: 'stormbreaker' }, timestamp: pino.stdTimeFunctions.isoTime };
  if (format === 'json' && stdoutIsJournal()) {
    // Under systemd, journald stores every stdout line at PRIORITY=6 unless it starts with an
    // sd-daemon(3) `<N>` prefix (SyslogLevelPrefix=yes, the default): add it, so an error is
    // `journalctl -p err` and not info. Synchronous, like pino's own stdout destination.
    const dest = pino.destination({ dest: 1, sync: true });
    return pino(opts, { write: (line: string) => dest.write(journalLine(line)) });
  }
  if (format === 'json') return pino(opts);
  return pino(opts, { write: (line: string) => process.stdout.write(prettyLine(line)) });
}

/**
 * systemd sets JOURNAL_STREAM=DEV:INODE when stdout/stderr go to journald (systemd.exec(5)); it
 * is inherited by children whose stdout may go elsewhere, so compare it with fd 1 itself.
 */
export function stdoutIsJournal(env: NodeJS.ProcessEnv = process.env, fd = 1): boolean {
  const js = env.JOURNAL_STREAM;
  if (!js) return false;
  try {
    const st = fstatSync(fd);
    return js === `${st.dev}:${st.ino}`;
  } catch {
    return false;
  }
}

/** pino level -> syslog priority (sd-daemon(3)): fatal 2 crit, error 3, warn 4, info 6, debug/trace 7. */
export function syslogPriority(pinoLevel: number): number {
  if (pinoLevel >= 60) return 2;
  if (pinoLevel >= 50) return 3;
  if (pinoLevel >= 40) return 4;
  if (pinoLevel >= 30) return 6;
  return 7;
}

/** One pino JSON line with its `<N>` journald priority prefix (pino writes "level" first). Pure. */
export function journalLine(line: string): string {
  const m = /^\{"level":(\d+)/.exec(line);
  return `<${m ? syslogPriority(Number(m[1])) : 6}>${line}`;
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
