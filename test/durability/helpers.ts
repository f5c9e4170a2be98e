import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/log';

/** Creates a logger at `level` that keeps every JSON line it writes, parsed, for assertions. */
export function recordingLogger(level = 'info'): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const text of chunk.toString('utf8').split('\n')) {
        if (text.trim() !== '') lines.push(JSON.parse(text) as Record<string, unknown>);
      }
      callback();
    },
  });
  return { logger: createLogger(level, destination), lines };
}

/** Outbox messages with payloads `{"n":first}` to `{"n":first+count-1}`, QoS 1. */
export function numberedMessages(topic: string, first: number, count: number) {
  return Array.from({ length: count }, (_, index) => ({
    topic,
    payload: JSON.stringify({ n: first + index }),
    qos: 1 as const,
    retain: false,
  }));
}
