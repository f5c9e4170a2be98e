import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MqttConnection } from '../../src/mqtt/connection';
import { OutboxPublisher } from '../../src/mqtt/publisher';
import { Store } from '../../src/store';
import { mqttSettings, silentLogger, startBroker, testTopics, waitFor } from './helpers';

const topics = testTopics();

describe('OutboxPublisher with the real Store', () => {
  test('drains outbox rows of a stored input', async () => {
    const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'bitnet-edge-store-outbox-'));
    const store = new Store({ file: path.join(folder, 'bitnet-edge.db'), logger: silentLogger() });
    store.open();
    const accepted: string[] = [];
    const { broker, url } = await startBroker(0, (message) => {
      if (message.topic === topics.errors) accepted.push(message.payload.toString());
    });
    const connection = new MqttConnection({ url, options: mqttSettings({ clientId: 'daemon-store' }), topics, logger: silentLogger(), onRequest: () => Promise.resolve() });
    const publisher = new OutboxPublisher({ store, connection, logger: silentLogger(), maxPerSecond: 1000, batchSize: 10 });

    try {
      const publications = ['{"n":1}', '{"n":2}', '{"n":3}'].map((payload) => ({ topic: topics.errors, payload, qos: 1 as const, retain: false }));
      store.enqueueInput({ source: 'cli', inputKey: 'outbox-test', requestId: null, origin: 'test', reply: null }, [], [], publications);
      expect(store.countOutbox()).toBe(3);

      await connection.start();
      publisher.start();
      await waitFor(() => store.countOutbox() === 0, 'an empty outbox');
      expect(accepted).toEqual(['{"n":1}', '{"n":2}', '{"n":3}']);
    } finally {
      await publisher.stop();
      await connection.stop();
      await broker.stop();
      store.close();
      fs.rmSync(folder, { recursive: true, force: true });
    }
  });
});
