import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { connect, type IPublishPacket, type MqttClient } from 'mqtt';
import { isBrokerListening } from '../../src/mqtt/broker';
import { MqttConnection, type IncomingRequest } from '../../src/mqtt/connection';
import { connectClient, createGate, HOST, mqttSettings, silentLogger, testTopics, waitFor, type Gate } from './helpers';

/** Path of Debian's Mosquitto binary. Without it, these MQTT 5 tests are skipped. */
const MOSQUITTO = '/usr/sbin/mosquitto';
const describeWithMosquitto = fs.existsSync(MOSQUITTO) ? describe : describe.skip;

const topics = testTopics();

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  return address.port;
}

describeWithMosquitto('MqttConnection on Mosquitto with MQTT 5', () => {
  let folder: string;
  let mosquitto: ChildProcess;
  let url: string;
  const cleanups: Array<() => Promise<void>> = [];

  beforeEach(async () => {
    folder = fs.mkdtempSync(path.join(os.tmpdir(), 'bitnet-edge-mosquitto-'));
    const port = await freePort();
    const configFile = path.join(folder, 'mosquitto.conf');
    fs.writeFileSync(configFile, `listener ${port} ${HOST}\nallow_anonymous true\npersistence false\n`);
    mosquitto = spawn(MOSQUITTO, ['-c', configFile], { stdio: 'ignore' });
    url = `mqtt://${HOST}:${port}`;

    const deadline = Date.now() + 10_000;
    while (!(await isBrokerListening(HOST, port, 500))) {
      if (Date.now() > deadline) throw new Error('Mosquitto did not start listening');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  });

  afterEach(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    cleanups.length = 0;
    const exited = new Promise((resolve) => mosquitto.once('exit', resolve));
    mosquitto.kill('SIGTERM');
    await exited;
    fs.rmSync(folder, { recursive: true, force: true });
  });

  async function startConnection(onRequest: (request: IncomingRequest) => Promise<void>, clientId: string): Promise<{ connection: MqttConnection; client: () => MqttClient }> {
    let created: MqttClient | null = null;
    const connection = new MqttConnection({
      url,
      options: mqttSettings({ clientId }),
      topics,
      logger: silentLogger(),
      onRequest,
      protocolVersion: 5,
      clientFactory: (brokerUrl, options) => {
        created = connect(brokerUrl, options);
        return created;
      },
    });
    await connection.start();
    cleanups.push(() => connection.stop());
    return { connection, client: () => created! };
  }

  test('response topic and correlation data', async () => {
    const requests: IncomingRequest[] = [];
    const { connection } = await startConnection((request) => {
      requests.push(request);
      return Promise.resolve();
    }, 'daemon-v5');
    expect(connection.isConnected()).toBe(true);

    const requester = await connectClient(url, { clientId: 'requester-v5', protocolVersion: 5 });
    cleanups.push(() => requester.endAsync());
    const replies: IPublishPacket[] = [];
    requester.on('message', (_topic, _payload, packet) => replies.push(packet));
    await requester.subscribeAsync('replies/requester-v5', { qos: 1 });

    const correlationData = Buffer.from('request-7');
    await requester.publishAsync(topics.request, '{"sequence":"MKTAYIAKQR"}', {
      qos: 1,
      properties: { responseTopic: 'replies/requester-v5', correlationData },
    });
    await waitFor(() => requests.length === 1, 'the request');
    expect(requests[0].responseTopic).toBe('replies/requester-v5');
    expect(requests[0].correlationData?.toString()).toBe('request-7');

    await connection.publish({
      topic: 'replies/requester-v5',
      payload: '{"status":"ok"}',
      qos: 1,
      retain: false,
      correlationData: correlationData.toString('base64'),
    });
    await waitFor(() => replies.length === 1, 'the reply');
    expect(replies[0].payload.toString()).toBe('{"status":"ok"}');
    expect(replies[0].properties?.correlationData?.toString()).toBe('request-7');
  });

  test('unacked request survives a reconnect', async () => {
    const calls: string[] = [];
    const gates: Gate[] = [];
    const first = await startConnection((request) => {
      calls.push(request.payload.toString());
      const gate = createGate();
      gates.push(gate);
      return gate.promise;
    }, 'daemon-v5-ack');

    const sender = await connectClient(url, { clientId: 'sender-v5', protocolVersion: 5 });
    cleanups.push(() => sender.endAsync());
    await sender.publishAsync(topics.request, 'request-1', { qos: 1 });
    await waitFor(() => calls.length === 1, 'the first delivery');

    first.client().stream.destroy();
    await waitFor(() => calls.length === 2, 'the redelivery after the reconnect');
    expect(calls).toEqual(['request-1', 'request-1']);

    for (const gate of gates) gate.resolve();
    await first.connection.stop();

    // The session outlives the connection, so a request sent meanwhile is queued for it.
    await sender.publishAsync(topics.request, 'request-2', { qos: 1 });
    const later: string[] = [];
    await startConnection((request) => {
      later.push(request.payload.toString());
      return Promise.resolve();
    }, 'daemon-v5-ack');
    await waitFor(() => later.length >= 1, 'the queued request');
    expect(later).toEqual(['request-2']);
  });
});
