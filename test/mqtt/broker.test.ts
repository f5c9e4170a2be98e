import { connectClient, HOST, startBroker, waitFor } from './helpers';
import { EmbeddedBroker, isBrokerListening, type BrokerPublish } from '../../src/mqtt/broker';
import { createLogger } from '../../src/log';

describe('EmbeddedBroker', () => {
  test('reports its port and is probed', async () => {
    const { broker, port } = await startBroker();
    expect(port).toBeGreaterThan(0);
    expect(await isBrokerListening(HOST, port, 2000)).toBe(true);

    await broker.stop();
    await broker.stop();
    expect(await isBrokerListening(HOST, port, 2000)).toBe(false);
  });

  test('second broker on a taken port fails', async () => {
    const { broker, port } = await startBroker();
    const second = new EmbeddedBroker({ host: HOST, port, logger: createLogger('silent') });
    await expect(second.start()).rejects.toThrow('EADDRINUSE');
    await second.stop();
    await broker.stop();
  });

  test('oversized publish is rejected', async () => {
    const accepted: BrokerPublish[] = [];
    const broker = new EmbeddedBroker({ host: HOST, port: 0, logger: createLogger('silent'), maxPayloadBytes: 8, onPublish: (message) => accepted.push(message) });
    const { port } = await broker.start();
    const client = await connectClient(`mqtt://${HOST}:${port}`, { clientId: 'sender-large' });
    let closed = false;
    client.on('close', () => {
      closed = true;
    });

    await client.publishAsync('t/small', 'small', { qos: 1 });
    client.publish('t/large', 'x'.repeat(9), { qos: 1 });
    await waitFor(() => closed, 'the broker to close the sender');

    expect(accepted.map((message) => message.topic)).toEqual(['t/small']);
    expect(accepted[0].clientId).toBe('sender-large');
    await client.endAsync(true);
    await broker.stop();
  });
});
