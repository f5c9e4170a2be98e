import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * Creates the root logger: JSON lines on stdout (or on `destination`). Components take a
 * child logger with `logger.child({ component: 'name' })`.
 */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino({ level, base: { service: 'bitnet-edge' } }, destination);
}
