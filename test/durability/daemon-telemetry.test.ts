import path from 'node:path';
import { createLogger } from '../../src/log';
import { databaseFile, Store } from '../../src/store';
import { DaemonHarness } from '../support/daemon-harness';
import { numberedMessages } from './helpers';

describe('daemon durability wiring', () => {
  let harness: DaemonHarness;

  beforeEach(() => {
    harness = new DaemonHarness();
  });

  afterEach(async () => {
    await harness.stop();
    harness.remove();
  });

  test('telemetry reports drops stored before start', async () => {
    // A previous run with a bound of 2 dropped 3 of 5 messages.
    const earlier = new Store({ file: databaseFile(path.join(harness.dir, 'data')), logger: createLogger('silent'), outboxMaxMessages: 2 });
    earlier.open();
    earlier.enqueueInput(
      { source: 'cli', inputKey: 'earlier-run', requestId: null, origin: 'test', reply: null },
      [],
      [],
      numberedMessages('bitnet-edge/test-device/predictions', 1, 5),
    );
    expect(earlier.outboxDroppedTotal()).toBe(3);
    earlier.close();

    await harness.start();
    const { topics } = harness.endpoints;
    await harness.probe.waitFor(() => harness.probe.on(topics.telemetry).length >= 1, 15_000, 'telemetry');

    const record = harness.probe.json<{ queue: { outboxDropped: number; outboxDepth: number } }>(topics.telemetry).at(-1)!;
    expect(record.queue.outboxDropped).toBe(3);
    expect(harness.config.queue.maxAttempts).toBe(3);
  });
});
