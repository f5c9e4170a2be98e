import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect, type MqttClient } from 'mqtt';
import { RequestIntake } from '../../src/daemon/mqtt-requests';
import type { EmbeddedBroker } from '../../src/mqtt/broker';
import { MqttConnection, type IncomingRequest } from '../../src/mqtt/connection';
import { databaseFile, Store } from '../../src/store';
import { fakeResult } from '../intake/helpers';
import { connectClient, mqttSettings, silentLogger, startBroker, testTopics, waitFor } from './helpers';

const topics = testTopics();
const SEQUENCE = 'MKVLAAGGHHWQ';
const WINDOW_MS = 60_000;

describe('request redelivery', () => {
  let folder: string;
  let store: Store;
  let now: Date;
  let intake: RequestIntake;

  beforeEach(() => {
    folder = mkdtempSync(path.join(os.tmpdir(), 'bitnet-edge-redelivery-'));
    now = new Date('2024-05-01T12:00:00.000Z');
    store = new Store({ file: databaseFile(path.join(folder, 'data')), logger: silentLogger(), clock: () => now });
    store.open();
    intake = new RequestIntake({
      store,
      topics,
      maxPayloadBytes: 1_000_000,
      minLength: 5,
      redeliveryWindowMs: WINDOW_MS,
      logger: silentLogger(),
      onCommitted: () => undefined,
      onReceived: () => undefined,
      clock: () => now,
    });
  });

  afterEach(() => {
    store.close();
    rmSync(folder, { recursive: true, force: true });
  });

  function request(payload: string, messageId?: number): IncomingRequest {
    return { topic: topics.request, payload: Buffer.from(payload), ...(messageId === undefined ? {} : { messageId }) };
  }

  /** Counts the stored requests by their pending jobs, because each stored request has one record. */
  function storedRequests(): number {
    return store.countJobsByStatus().pending;
  }

  test('anonymous redelivery under same packet id stored once', async () => {
    const payload = JSON.stringify({ sequence: SEQUENCE });
    await intake.handle(request(payload, 7));
    now = new Date(now.getTime() + 5_000);
    await intake.handle(request(payload, 7));

    expect(storedRequests()).toBe(1);
  });

  test('identical anonymous requests under different packet ids both stored', async () => {
    const payload = JSON.stringify({ sequence: SEQUENCE });
    await intake.handle(request(payload, 7));
    await intake.handle(request(payload, 8));

    expect(storedRequests()).toBe(2);
  });

  test('packet id reused for another payload stores both', async () => {
    await intake.handle(request(JSON.stringify({ sequence: SEQUENCE }), 7));
    await intake.handle(request(JSON.stringify({ sequence: `${SEQUENCE}K` }), 7));
    // The packet id now belongs to the second payload, so the first one under it is new again.
    await intake.handle(request(JSON.stringify({ sequence: SEQUENCE }), 7));

    expect(storedRequests()).toBe(3);
  });

  test('match older than the window stores again', async () => {
    const payload = JSON.stringify({ sequence: SEQUENCE });
    await intake.handle(request(payload, 7));
    now = new Date(now.getTime() + WINDOW_MS + 1);
    await intake.handle(request(payload, 7));

    expect(storedRequests()).toBe(2);
  });

  test('new session forgets packet ids', async () => {
    const payload = JSON.stringify({ sequence: SEQUENCE });
    await intake.handle(request(payload, 7));
    intake.sessionStarted(true);
    await intake.handle(request(payload, 7));
    expect(storedRequests()).toBe(1);

    intake.sessionStarted(false);
    await intake.handle(request(payload, 7));
    expect(storedRequests()).toBe(2);
  });

  test('QoS 0 anonymous requests always stored', async () => {
    const payload = JSON.stringify({ sequence: SEQUENCE });
    await intake.handle(request(payload));
    await intake.handle(request(payload));

    expect(storedRequests()).toBe(2);
  });

  test('request with id keyed by id and payload', async () => {
    const payload = JSON.stringify({ id: 'r-1', sequence: SEQUENCE });
    await intake.handle(request(payload, 7));
    await intake.handle(request(payload, 9));
    await intake.handle(request(payload));
    expect(storedRequests()).toBe(1);

    await intake.handle(request(JSON.stringify({ id: 'r-2', sequence: SEQUENCE }), 7));
    expect(storedRequests()).toBe(2);
  });

  test('repeat of finished request sends reply again', async () => {
    const payload = JSON.stringify({ id: 'r-1', sequence: SEQUENCE });
    await intake.handle(request(payload, 7));
    const [job] = store.claimPendingJobs(1);
    store.completeJob(job.id, fakeResult(), []);
    store.finishInput(job.inputId, [{ topic: topics.response, payload: 'first reply', qos: 1, retain: false }]);

    await intake.handle(request(payload, 9));

    const replies = store.peekOutbox(10).filter((row) => row.topic === topics.response);
    expect(replies).toHaveLength(2);
    const repeated = JSON.parse(replies[1].payload) as { id: string; status: string; results: unknown[] };
    expect(repeated.id).toBe('r-1');
    expect(repeated.status).toBe('ok');
    expect(repeated.results).toHaveLength(1);
    expect(store.countJobsByStatus().done).toBe(1);
  });

  test('repeat of open request sends no reply', async () => {
    const payload = JSON.stringify({ id: 'r-1', sequence: SEQUENCE });
    await intake.handle(request(payload, 7));
    await intake.handle(request(payload, 9));

    expect(store.peekOutbox(10).filter((row) => row.topic === topics.response)).toEqual([]);
  });
});

describe('request redelivery through a broker', () => {
  let folder: string;
  let broker: EmbeddedBroker;
  let url: string;
  let store: Store;
  const cleanups: Array<() => Promise<void>> = [];

  beforeEach(async () => {
    folder = mkdtempSync(path.join(os.tmpdir(), 'bitnet-edge-redelivery-broker-'));
    store = new Store({ file: databaseFile(path.join(folder, 'data')), logger: silentLogger() });
    store.open();
    ({ broker, url } = await startBroker());
  });

  afterEach(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    cleanups.length = 0;
    await broker.stop();
    store.close();
    rmSync(folder, { recursive: true, force: true });
  });

  test('connection lost between commit and PUBACK runs once', async () => {
    const intake = new RequestIntake({
      store,
      topics,
      maxPayloadBytes: 1_000_000,
      minLength: 5,
      redeliveryWindowMs: WINDOW_MS,
      logger: silentLogger(),
      onCommitted: () => undefined,
      onReceived: () => undefined,
    });

    // The first delivery is committed, then the connection drops before the PUBACK, as when
    // the daemon dies right after the commit. The broker redelivers on the resumed session.
    const deliveries: IncomingRequest[] = [];
    let client: MqttClient | null = null;
    const connection = new MqttConnection({
      url,
      options: mqttSettings({ clientId: 'daemon-redelivery' }),
      topics,
      logger: silentLogger(),
      onSession: (sessionPresent) => intake.sessionStarted(sessionPresent),
      onRequest: async (incoming) => {
        deliveries.push(incoming);
        await intake.handle(incoming);
        if (deliveries.length === 1 && client !== null) {
          const closed = new Promise<void>((resolve) => client?.once('close', () => resolve()));
          client.stream.destroy();
          await closed;
        }
      },
      clientFactory: (brokerUrl, options) => {
        client = connect(brokerUrl, options);
        return client;
      },
    });
    await connection.start();
    cleanups.push(() => connection.stop());

    const requester = await connectClient(url, { clientId: 'requester' });
    cleanups.push(() => requester.endAsync());
    const payload = JSON.stringify({ sequence: SEQUENCE });
    await requester.publishAsync(topics.request, payload, { qos: 1 });
    await requester.publishAsync(topics.request, payload, { qos: 1 });

    await waitFor(() => deliveries.length >= 3, 'the redelivery and the second request');
    await new Promise((resolve) => setTimeout(resolve, 300));

    // Both requests can reach the client before the drop, and then both are redelivered.
    const packetIds = deliveries.map((delivery) => delivery.messageId);
    expect(new Set(packetIds).size).toBe(2);
    expect(packetIds.filter((id) => id === packetIds[0]).length).toBeGreaterThanOrEqual(2);
    // One input for the redelivered request, one for the separate identical request.
    expect(store.countJobsByStatus().pending).toBe(2);
  });
});
