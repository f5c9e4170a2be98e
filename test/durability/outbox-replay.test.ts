import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MqttConnection } from '../../src/mqtt/connection';
import { OutboxPublisher } from '../../src/mqtt/publisher';
import { databaseFile, Store } from '../../src/store';
import { mqttSettings, silentLogger, startBroker, testTopics, waitFor } from '../mqtt/helpers';
import { numberedMessages } from './helpers';

const topics = testTopics();
const QUEUED_DURING_OUTAGE = 40;

describe('outbox replay after a broker outage', () => {
  test('queued rows arrive in order with none lost', async () => {
    const folder = mkdtempSync(path.join(os.tmpdir(), 'bitnet-edge-replay-'));
    const store = new Store({ file: databaseFile(path.join(folder, 'data')), logger: silentLogger() });
    store.open();
    const arrived: number[] = [];
    const record = (message: { topic: string; payload: Buffer }): void => {
      if (message.topic === topics.predictions) arrived.push((JSON.parse(message.payload.toString()) as { n: number }).n);
    };

    let { broker, port, url } = await startBroker(0, record);
    const connection = new MqttConnection({ url, options: mqttSettings({ clientId: 'daemon-replay' }), topics, logger: silentLogger(), onRequest: () => Promise.resolve() });
    const publisher = new OutboxPublisher({ store, connection, logger: silentLogger(), maxPerSecond: 400, batchSize: 7 });

    try {
      await connection.start();
      publisher.start();
      store.enqueueInput({ source: 'cli', inputKey: 'before', requestId: null, origin: 'test', reply: null }, [], [], numberedMessages(topics.predictions, 1, 3));
      publisher.notify();
      await waitFor(() => arrived.length >= 3, 'the messages sent before the outage');

      await broker.stop();
      await waitFor(() => !connection.isConnected(), 'the connection to notice the outage');

      // Separate commits, so the rows are spread over several outbox ids and publisher batches.
      for (let first = 4; first < 4 + QUEUED_DURING_OUTAGE; first += 5) {
        store.enqueueInput({ source: 'cli', inputKey: `outage-${first}`, requestId: null, origin: 'test', reply: null }, [], [], numberedMessages(topics.predictions, first, 5));
        publisher.notify();
      }
      expect(store.countOutbox()).toBe(QUEUED_DURING_OUTAGE);

      ({ broker, port, url } = await startBroker(port, record));
      await waitFor(() => store.countOutbox() === 0, 'the outbox to drain after reconnect', 20_000);

      const expected = Array.from({ length: 3 + QUEUED_DURING_OUTAGE }, (_, index) => index + 1);
      const firstArrivals = arrived.filter((n, index) => arrived.indexOf(n) === index);
      expect(firstArrivals).toEqual(expected);
      // QoS 1 is at least once, so a message whose PUBACK was lost in the outage may arrive
      // twice. The publisher has one publish in flight at a time, so at most one can repeat.
      const duplicates = arrived.length - firstArrivals.length;
      expect(duplicates).toBeLessThanOrEqual(1);
    } finally {
      await publisher.stop();
      await connection.stop();
      await broker.stop();
      store.close();
      rmSync(folder, { recursive: true, force: true });
    }
  });
});
