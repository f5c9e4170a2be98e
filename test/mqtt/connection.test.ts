import os from 'node:os';
import path from 'node:path';
import { connect, type MqttClient } from 'mqtt';
import type { EmbeddedBroker } from '../../src/mqtt/broker';
import { MqttConnection, type IncomingRequest } from '../../src/mqtt/connection';
import { connectClient, createGate, mqttSettings, silentLogger, startBroker, testTopics, waitFor, type Gate } from './helpers';

const topics = testTopics();

describe('MqttConnection', () => {
  let broker: EmbeddedBroker;
  let url: string;
  const cleanups: Array<() => Promise<void>> = [];

  beforeEach(async () => {
    const started = await startBroker();
    broker = started.broker;
    url = started.url;
  });

  afterEach(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    cleanups.length = 0;
    await broker.stop();
  });

  /** Starts a connection and returns it with the mqtt.js client it created. */
  async function startConnection(
    onRequest: (request: IncomingRequest) => Promise<void>,
    clientId = 'daemon-under-test',
    maxPayloadBytes = 1024,
  ): Promise<{ connection: MqttConnection; client: () => MqttClient }> {
    let created: MqttClient | null = null;
    const connection = new MqttConnection({
      url,
      options: mqttSettings({ clientId, maxPayloadBytes }),
      topics,
      logger: silentLogger(),
      onRequest,
      clientFactory: (brokerUrl, options) => {
        created = connect(brokerUrl, options);
        return created;
      },
    });
    await connection.start();
    cleanups.push(() => connection.stop());
    return { connection, client: () => created! };
  }

  /** Subscribes an observer to `topic` and collects the payloads it receives. */
  async function observe(topic: string): Promise<string[]> {
    const observer = await connectClient(url, { clientId: `observer-${Math.random().toString(16).slice(2)}` });
    cleanups.push(() => observer.endAsync());
    const received: string[] = [];
    observer.on('message', (_topic, payload) => received.push(payload.toString()));
    await observer.subscribeAsync(topic, { qos: 1 });
    return received;
  }

  test('status is retained online then stopped', async () => {
    const { connection } = await startConnection(() => Promise.resolve());
    expect(connection.isConnected()).toBe(true);

    const statuses = await observe(topics.status);
    await waitFor(() => statuses.length >= 1, 'the retained status');
    expect(statuses[0]).toBe('online');

    await connection.stop();
    await waitFor(() => statuses.length >= 2, 'the stopped status');
    expect(statuses[1]).toBe('stopped');
    expect(connection.isConnected()).toBe(false);

    const later = await observe(topics.status);
    await waitFor(() => later.length >= 1, 'the retained status for a late subscriber');
    expect(later[0]).toBe('stopped');

    await connection.stop();
  });

  test('will publishes offline on a dropped socket', async () => {
    const { client } = await startConnection(() => Promise.resolve());
    const statuses = await observe(topics.status);
    await waitFor(() => statuses.includes('online'), 'the online status');

    client().stream.destroy();

    await waitFor(() => statuses.includes('offline'), 'the offline will');
    // The client reconnects on its own and announces itself again.
    await waitFor(() => statuses.lastIndexOf('online') > statuses.indexOf('offline'), 'online after the reconnect');
  });

  test('request is acked only after onRequest resolves', async () => {
    const calls: string[] = [];
    const gates: Gate[] = [];
    const onRequest = (request: IncomingRequest): Promise<void> => {
      calls.push(request.payload.toString());
      const gate = createGate();
      gates.push(gate);
      return gate.promise;
    };
    const first = await startConnection(onRequest, 'daemon-ack');

    const sender = await connectClient(url, { clientId: 'sender-ack' });
    cleanups.push(() => sender.endAsync());
    await sender.publishAsync(topics.request, 'request-1', { qos: 1 });
    await waitFor(() => calls.length === 1, 'the first delivery');
    expect(calls[0]).toBe('request-1');

    // Drop the connection while onRequest is still pending: the broker must redeliver it.
    first.client().stream.destroy();
    await waitFor(() => calls.length === 2, 'the redelivery after the reconnect');
    expect(calls[1]).toBe('request-1');
    expect(first.connection.isConnected()).toBe(true);

    for (const gate of gates) gate.resolve();
    await first.connection.stop();

    // A request queued while the daemon was away comes first and alone when request-1 was acked.
    await sender.publishAsync(topics.request, 'request-2', { qos: 1 });
    const later: string[] = [];
    await startConnection((request) => {
      later.push(request.payload.toString());
      return Promise.resolve();
    }, 'daemon-ack');
    await waitFor(() => later.length >= 1, 'the queued request');
    expect(later).toEqual(['request-2']);
  });

  test('rejected onRequest leads to redelivery', async () => {
    const calls: string[] = [];
    const onRequest = (request: IncomingRequest): Promise<void> => {
      calls.push(request.payload.toString());
      return calls.length === 1 ? Promise.reject(new Error('database is locked')) : Promise.resolve();
    };
    const first = await startConnection(onRequest, 'daemon-retry');

    const sender = await connectClient(url, { clientId: 'sender-retry' });
    cleanups.push(() => sender.endAsync());
    await sender.publishAsync(topics.request, 'retry-me', { qos: 1 });

    await waitFor(() => calls.length === 2, 'the redelivery of the failed request');
    expect(calls).toEqual(['retry-me', 'retry-me']);
    await first.connection.stop();

    await sender.publishAsync(topics.request, 'marker', { qos: 1 });
    const later: string[] = [];
    await startConnection((request) => {
      later.push(request.payload.toString());
      return Promise.resolve();
    }, 'daemon-retry');
    await waitFor(() => later.length >= 1, 'the marker request');
    expect(later).toEqual(['marker']);
  });

  test('QoS 0 and oversized requests reach onRequest', async () => {
    const received: IncomingRequest[] = [];
    await startConnection((request) => {
      received.push(request);
      return Promise.resolve();
    }, 'daemon-qos0', 16);

    const sender = await connectClient(url, { clientId: 'sender-qos0' });
    cleanups.push(() => sender.endAsync());
    await sender.publishAsync(topics.request, 'qos-zero', { qos: 0 });
    await sender.publishAsync(topics.request, 'x'.repeat(100), { qos: 1 });

    await waitFor(() => received.length === 2, 'both requests');
    expect(received[0].payload.toString()).toBe('qos-zero');
    expect(received[0].messageId).toBeUndefined();
    expect(received[1].payload.length).toBe(100);
    expect(received[1].topic).toBe(topics.request);
    expect(typeof received[1].messageId).toBe('number');
  });

  test('publish resolves on PUBACK and rejects when offline', async () => {
    const { connection } = await startConnection(() => Promise.resolve());
    const predictions = await observe(topics.predictions);

    await connection.publish({ topic: topics.predictions, payload: '{"n":1}', qos: 1, retain: false });
    await waitFor(() => predictions.length === 1, 'the published prediction');
    expect(predictions[0]).toBe('{"n":1}');

    await broker.stop();
    await waitFor(() => !connection.isConnected(), 'the connection to notice the broker stopped');
    await expect(connection.publish({ topic: topics.predictions, payload: '{}', qos: 1, retain: false })).rejects.toThrow('not connected');
  });

  test('publishVolatile sends QoS 0 when online', async () => {
    const { connection } = await startConnection(() => Promise.resolve());
    const telemetry = await observe(topics.telemetry);

    connection.publishVolatile(topics.telemetry, '{"sample":1}');
    await waitFor(() => telemetry.length === 1, 'the telemetry message');
    expect(telemetry[0]).toBe('{"sample":1}');

    await broker.stop();
    await waitFor(() => !connection.isConnected(), 'the connection to notice the broker stopped');
    expect(() => connection.publishVolatile(topics.telemetry, '{"sample":2}')).not.toThrow();
  });

  test('onConnect option runs on every connect', async () => {
    let connects = 0;
    let created: MqttClient | null = null;
    const connection = new MqttConnection({
      url,
      options: mqttSettings({ clientId: 'daemon-on-connect' }),
      topics,
      logger: silentLogger(),
      onRequest: () => Promise.resolve(),
      onConnect: () => {
        connects += 1;
      },
      clientFactory: (brokerUrl, options) => {
        created = connect(brokerUrl, options);
        return created;
      },
    });
    cleanups.push(() => connection.stop());
    await connection.start();
    expect(connects).toBe(1);

    created!.stream.destroy();
    await waitFor(() => connects === 2, 'the second connect');
  });

  test('start resolves without a broker', async () => {
    await broker.stop();
    const connection = new MqttConnection({
      url,
      options: mqttSettings({ clientId: 'daemon-no-broker' }),
      topics,
      logger: silentLogger(),
      onRequest: () => Promise.resolve(),
      startTimeoutMs: 300,
    });
    cleanups.push(() => connection.stop());

    await connection.start();
    expect(connection.isConnected()).toBe(false);
  });

  test('stop during start ends the wait', async () => {
    await broker.stop();
    const connection = new MqttConnection({
      url,
      options: mqttSettings({ clientId: 'daemon-stop-early' }),
      topics,
      logger: silentLogger(),
      onRequest: () => Promise.resolve(),
      startTimeoutMs: 600_000,
    });

    let startSettled = false;
    const starting = connection.start().then(() => {
      startSettled = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(startSettled).toBe(false);

    await connection.stop();
    await starting;
    expect(startSettled).toBe(true);
    expect(connection.isConnected()).toBe(false);
  });

  test('missing TLS file rejects start', async () => {
    const missing = path.join(os.tmpdir(), `bitnet-edge-missing-${process.pid}`, 'ca.pem');
    const settings = mqttSettings({ clientId: 'daemon-tls' });
    const connection = new MqttConnection({
      url,
      options: { ...settings, tls: { ...settings.tls, ca: missing } },
      topics,
      logger: silentLogger(),
      onRequest: () => Promise.resolve(),
    });

    await expect(connection.start()).rejects.toThrow(`failed to read mqtt.tls.ca (${missing})`);
    expect(connection.isConnected()).toBe(false);
    await connection.stop();
  });
});
