import { pino, type Level, type Logger } from 'pino';

/** One log line of a node, as pino wrote it (JSON). */
export type LogLine = Record<string, unknown> & { level: number; msg?: string };

/**
 * A pino logger that keeps every line it writes, parsed, in `lines`, for tests
 * that assert on logs (audit lines, warnings, access logs).
 */
export function captureLogs(level: Level = 'info', lines: LogLine[] = []): { logger: Logger; lines: LogLine[] } {
  // pino writes one complete line per call to a destination object, synchronously.
  const logger = pino({ level }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
  return { logger, lines };
}
