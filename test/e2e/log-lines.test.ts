import { Writable } from 'node:stream';
import pino from 'pino';
import { DaemonHarness } from '../support/daemon-harness';

jest.setTimeout(60_000);

describe('daemon log lines', () => {
  test('each line names its component once', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(...chunk.toString('utf8').split('\n').filter((line) => line.length > 0));
        done();
      },
    });
    const harness = new DaemonHarness(undefined, pino({ level: 'info' }, sink));
    try {
      await harness.start();
    } finally {
      await harness.stop();
      harness.remove();
    }

    const brokerLine = lines.find((line) => line.includes('embedded broker listening'));
    expect(brokerLine).toBeDefined();
    expect((JSON.parse(brokerLine as string) as { component?: string }).component).toBe('embedded-broker');
    const repeated = lines.filter((line) => (line.match(/"component":/g) ?? []).length > 1);
    expect(repeated).toEqual([]);
  });
});
