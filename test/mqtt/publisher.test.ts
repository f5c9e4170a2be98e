import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { OutboxMessage, OutboxRow } from '../../src/contracts/store';
import type { BrokerPublish, EmbeddedBroker } from '../../src/mqtt/broker';
import { MqttConnection } from '../../src/mqtt/connection';
import { OutboxPublisher, type OutboxConnection, type OutboxStore } from '../../src/mqtt/publisher';
import { mqttSettings, silentLogger, startBroker, testTopics, waitFor } from './helpers';

const topics = testTopics();

/** A real SQLite outbox table with the OutboxStore methods of the store. */
class SqliteOutbox implements OutboxStore {
  readonly db: Database.Database;

  constructor(file: string) {
    this.db = new Database(file);
    this.db.exec(`CREATE TABLE outbox (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      topic TEXT NOT NULL, payload TEXT NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,
      created_at TEXT NOT NULL)`);
  }

  insert(payload: string): void {
    this.db
      .prepare('INSERT INTO outbox (topic, payload, qos, retain, created_at) VALUES (?, ?, 1, 0, ?)')
      .run(topics.predictions, payload, new Date().toISOString());
  }

  has(payload: string): boolean {
    return this.db.prepare('SELECT 1 FROM outbox WHERE payload = ?').get(payload) !== undefined;
  }

  peekOutbox(limit: number): OutboxRow[] {
    const rows = this.db.prepare('SELECT * FROM outbox ORDER BY id LIMIT ?').all(limit) as Array<{
      id: number;
      topic: string;
      payload: string;
      qos: number;
      retain: number;
      created_at: string;
    }>;
    return rows.map((row) => ({
      id: row.id,
      topic: row.topic,
      payload: row.payload,
      qos: row.qos === 1 ? 1 : 0,
      retain: row.retain === 1,
      createdAt: row.created_at,
    }));
  }

  deleteOutbox(id: number): void {
    this.db.prepare('DELETE FROM outbox WHERE id = ?').run(id);
  }

  replaceOutbox(id: number, message: OutboxMessage): void {
    this.db
      .prepare('UPDATE outbox SET topic = ?, payload = ?, qos = ?, retain = ? WHERE id = ?')
      .run(message.topic, message.payload, message.qos, message.retain ? 1 : 0, id);
  }

  countOutbox(): number {
    return (this.db.prepare('SELECT count(*) AS n FROM outbox').get() as { n: number }).n;
  }
}

describe('OutboxPublisher', () => {
  let folder: string;
  let outbox: SqliteOutbox;
  let broker: EmbeddedBroker | null;
  let brokerPort: number;
  let connection: MqttConnection;
  let publisher: OutboxPublisher | null;
  /** Predictions and errors the broker accepted, with whether their row still existed at that moment. */
  let accepted: Array<{ topic: string; payload: string; rowStillStored: boolean }>;

  const onPublish = (message: BrokerPublish): void => {
    if (message.topic !== topics.predictions && message.topic !== topics.errors) return;
    const payload = message.payload.toString();
    accepted.push({ topic: message.topic, payload, rowStillStored: outbox.has(payload) });
  };

  beforeEach(async () => {
    folder = fs.mkdtempSync(path.join(os.tmpdir(), 'bitnet-edge-outbox-'));
    outbox = new SqliteOutbox(path.join(folder, 'outbox.db'));
    accepted = [];
    publisher = null;
    const started = await startBroker(0, onPublish);
    broker = started.broker;
    brokerPort = started.port;
    connection = new MqttConnection({
      url: started.url,
      options: mqttSettings({ clientId: 'daemon-outbox' }),
      topics,
      logger: silentLogger(),
      onRequest: () => Promise.resolve(),
    });
    await connection.start();
  });

  afterEach(async () => {
    await publisher?.stop();
    await connection.stop();
    await broker?.stop();
    outbox.db.close();
    fs.rmSync(folder, { recursive: true, force: true });
  });

  function createPublisher(
    target: OutboxConnection = connection,
    maxPayloadBytes?: number,
    replaceOversized?: (row: OutboxRow, bytes: number, limit: number) => OutboxMessage | null,
  ): OutboxPublisher {
    return new OutboxPublisher({
      store: outbox,
      connection: target,
      logger: silentLogger(),
      maxPerSecond: 1000,
      batchSize: 2,
      ...(maxPayloadBytes === undefined ? {} : { maxPayloadBytes }),
      ...(replaceOversized ? { replaceOversized } : {}),
    });
  }

  test('rows are deleted only after PUBACK', async () => {
    for (let i = 1; i <= 5; i += 1) outbox.insert(`prediction-${i}`);
    publisher = createPublisher();
    publisher.start();

    await waitFor(() => outbox.countOutbox() === 0, 'an empty outbox');
    expect(accepted.map((entry) => entry.payload)).toEqual(['prediction-1', 'prediction-2', 'prediction-3', 'prediction-4', 'prediction-5']);
    for (const entry of accepted) expect(entry.rowStillStored).toBe(true);
  });

  test('oversized row deleted, later rows sent', async () => {
    outbox.insert('small-1');
    outbox.insert('x'.repeat(2000));
    outbox.insert('small-2');
    publisher = createPublisher(connection, 1000);
    publisher.start();

    await waitFor(() => outbox.countOutbox() === 0, 'an empty outbox');
    expect(accepted.map((entry) => entry.payload)).toEqual(['small-1', 'small-2']);
  });

  test('oversized row replaced in place', async () => {
    outbox.insert('small-1');
    outbox.insert('x'.repeat(2000));
    outbox.insert('small-2');
    const seen: Array<{ bytes: number; limit: number }> = [];
    publisher = createPublisher(connection, 1000, (row, bytes, limit) => {
      seen.push({ bytes, limit });
      return { topic: topics.errors, payload: `too large: row ${row.id}`, qos: 1, retain: false };
    });
    publisher.start();

    await waitFor(() => outbox.countOutbox() === 0, 'an empty outbox');
    expect(accepted.map((entry) => entry.payload)).toEqual(['small-1', 'too large: row 2', 'small-2']);
    expect(accepted[1].topic).toBe(topics.errors);
    expect(seen).toEqual([{ bytes: 2000, limit: 1000 }]);
  });

  test('too large replacement dropped', async () => {
    outbox.insert('x'.repeat(2000));
    outbox.insert('small-1');
    publisher = createPublisher(connection, 1000, () => ({ topic: topics.errors, payload: 'y'.repeat(1001), qos: 1, retain: false }));
    publisher.start();

    await waitFor(() => outbox.countOutbox() === 0, 'an empty outbox');
    expect(accepted.map((entry) => entry.payload)).toEqual(['small-1']);
  });

  test('notify sends rows committed later', async () => {
    publisher = createPublisher();
    publisher.start();
    await waitFor(() => connection.isConnected(), 'the connection');

    outbox.insert('late-1');
    outbox.insert('late-2');
    publisher.notify();

    await waitFor(() => outbox.countOutbox() === 0, 'an empty outbox');
    expect(accepted.map((entry) => entry.payload)).toEqual(['late-1', 'late-2']);
  });

  test('rows wait for a restarted broker', async () => {
    publisher = createPublisher();
    publisher.start();

    await broker!.stop();
    broker = null;
    await waitFor(() => !connection.isConnected(), 'the connection to notice the broker stopped');

    for (let i = 1; i <= 3; i += 1) outbox.insert(`offline-${i}`);
    publisher.notify();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(outbox.countOutbox()).toBe(3);

    broker = (await startBroker(brokerPort, onPublish)).broker;
    await waitFor(() => outbox.countOutbox() === 0, 'the outbox to drain after the restart');
    expect(accepted.map((entry) => entry.payload)).toEqual(['offline-1', 'offline-2', 'offline-3']);
  });

  test('drains never overlap', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const counting: OutboxConnection = {
      isConnected: () => connection.isConnected(),
      onConnect: (listener) => connection.onConnect(listener),
      publish: async (message: OutboxMessage) => {
        inFlight += 1;
        maxInFlight = Math.max(maxInFlight, inFlight);
        try {
          await connection.publish(message);
        } finally {
          inFlight -= 1;
        }
      },
    };
    publisher = createPublisher(counting);
    publisher.start();

    for (let i = 1; i <= 10; i += 1) {
      outbox.insert(`burst-${i}`);
      publisher.notify();
    }

    await waitFor(() => outbox.countOutbox() === 0, 'an empty outbox');
    expect(maxInFlight).toBe(1);
    expect(accepted).toHaveLength(10);
  });
});
