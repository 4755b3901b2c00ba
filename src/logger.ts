import { pino, type Logger } from 'pino';

export interface LoggerOptions {
  /** LOG_LEVEL. */
  level: string;
  /**
   * Human-readable lines (pino-pretty) instead of JSON: for a developer's terminal. Written
   * synchronously, so nothing is lost when the process exits right after a line.
   * @defaultValue false: one JSON object per line, for log collectors
   */
  pretty?: boolean;
}

/** The process's logger: JSON lines, or pretty ones in a developer's terminal (pino-pretty loaded only then). */
export async function createLogger(options: LoggerOptions): Promise<Logger> {
  const settings = { level: options.level, base: { service: 'postbox' } };
  if (!options.pretty) return pino(settings);
  const { default: PinoPretty } = await import('pino-pretty');
  return pino(
    settings,
    // `redis` and `listen` (the start-up report) repeat what their messages say in words.
    PinoPretty({ sync: true, colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service,redis,listen' }),
  );
}
