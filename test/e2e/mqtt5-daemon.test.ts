import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { connectAsync, type IPublishPacket, type MqttClient } from 'mqtt';
import { exitOf, isMosquittoInstalled, killHard, makeTempDir, MosquittoBroker, startDaemon, TOPIC_ROOT } from '../faults/harness';
import { waitUntil } from '../support/mqtt-probe';
import { freePort } from '../support/ports';
import { UBIQUITIN_HUMAN } from '../support/proteins';

/** A two-layer model; its predictions are meaningless, but it loads and runs in a moment. */
const SMOKE_MODEL_DIR = path.resolve(__dirname, '..', 'fixtures', 'model-smoke');
const describeWithMosquitto = isMosquittoInstalled() ? describe : describe.skip;

interface Reply {
  id: string | null;
  status: string;
}

describeWithMosquitto('daemon on Mosquitto with MQTT 5', () => {
  let dir: string;
  let broker: MosquittoBroker;
  let daemon: ChildProcess | null = null;
  let requester: MqttClient | null = null;
  const replies: IPublishPacket[] = [];

  beforeAll(async () => {
    dir = makeTempDir('bitnet-mqtt5-daemon-');
    broker = new MosquittoBroker(dir, await freePort());
    await broker.start();

    requester = await connectAsync(broker.url, { clientId: 'requester-v5', protocolVersion: 5, reconnectPeriod: 0 });
    requester.on('message', (_topic, _payload, packet) => replies.push(packet));
    await requester.subscribeAsync('replies/requester-v5/#', { qos: 1 });
    const online = await requester.subscribeAsync(`${TOPIC_ROOT}/status`, { qos: 1 });
    expect(online).toHaveLength(1);

    daemon = startDaemon(dir, broker.url, { BITNET_EDGE_MODEL_DIR: SMOKE_MODEL_DIR, BITNET_EDGE_MQTT_PROTOCOL_VERSION: '5' });
    await waitUntil(() => replies.some((packet) => packet.topic === `${TOPIC_ROOT}/status` && packet.payload.toString() === 'online'), 60_000, 'online status');
  }, 90_000);

  afterAll(async () => {
    if (daemon) await killHard(daemon);
    await requester?.endAsync();
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  function replyOn(topic: string): IPublishPacket | undefined {
    return replies.find((packet) => packet.topic === topic);
  }

  /** Publishes `body` with a response topic and correlation data, and returns the reply packet. */
  async function requestWithResponseTopic(requestTopic: string, body: object, replyTopic: string, correlation: string): Promise<IPublishPacket> {
    await requester!.publishAsync(requestTopic, JSON.stringify(body), {
      qos: 1,
      properties: { responseTopic: replyTopic, correlationData: Buffer.from(correlation) },
    });
    await waitUntil(() => replyOn(replyTopic) !== undefined, 60_000, `the reply on ${replyTopic}`);
    return replyOn(replyTopic)!;
  }

  test.each([
    ['prediction', 'predict', { id: 'v5-predict', sequence: UBIQUITIN_HUMAN }, 'correlation-1'],
    ['variant', 'variants', { id: 'v5-variants', sequence: UBIQUITIN_HUMAN, variants: ['K48R'] }, 'correlation-2'],
  ])('%s reply on response topic', async (_kind, endpoint, body, correlation) => {
    const packet = await requestWithResponseTopic(`${TOPIC_ROOT}/request/${endpoint}`, body, `replies/requester-v5/${endpoint}`, correlation);

    const reply = JSON.parse(packet.payload.toString()) as Reply;
    expect(reply.id).toBe(body.id);
    expect(reply.status).toBe('ok');
    expect(packet.properties?.correlationData?.toString()).toBe(correlation);
  });

  test('daemon stops cleanly', async () => {
    const exited = exitOf(daemon!);
    daemon!.kill('SIGTERM');
    expect(await exited).toBe(0);
    daemon = null;
  });
});
