import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON lines to stdout (journald-friendly). One child per component: log.child({ component }). */
export function createLogger(level: string = process.env.STORMBREAKER_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { app: 'stormbreaker' }, timestamp: pino.stdTimeFunctions.isoTime });
}

/** A logger that drops everything, for tools and tests that do not want output. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
