import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import { loadConfig, type ResolvedConfig } from '../../src/config/load';
import { buildTopics, type Topics } from '../../src/contracts/topics';
import { createLogger, type Logger } from '../../src/log';
import { EmbeddedBroker, type BrokerPublish } from '../../src/mqtt/broker';

export const HOST = '127.0.0.1';

export function silentLogger(): Logger {
  return createLogger('silent');
}

export function testTopics(deviceId = 'test-device'): Topics {
  return buildTopics('bitnet-edge', deviceId);
}

/** MQTT settings from the schema defaults, with short timings for tests. */
export function mqttSettings(overrides: Partial<ResolvedConfig['mqtt']> = {}): ResolvedConfig['mqtt'] {
  const defaults = loadConfig({ env: {}, cwd: process.cwd() }).mqtt;
  return { ...defaults, reconnectPeriodMs: 200, keepaliveSeconds: 10, ...overrides, tls: { ...defaults.tls } };
}

/** Starts an embedded broker on loopback. Port 0 picks a free port. */
export async function startBroker(
  port = 0,
  onPublish?: (message: BrokerPublish) => void,
): Promise<{ broker: EmbeddedBroker; port: number; url: string }> {
  const broker = new EmbeddedBroker({ host: HOST, port, logger: silentLogger(), onPublish });
  const address = await broker.start();
  return { broker, port: address.port, url: `mqtt://${HOST}:${address.port}` };
}

/** Connects a plain mqtt.js client, as a user of the daemon would. */
export function connectClient(url: string, options: IClientOptions = {}): Promise<MqttClient> {
  return connectAsync(url, { reconnectPeriod: 0, ...options });
}

/** Polls `predicate` until it is true, and fails the test after `timeoutMs`. */
export async function waitFor(predicate: () => boolean, description: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${description}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A promise with its resolve and reject functions, for steps a test releases. */
export interface Gate {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}

export function createGate(): Gate {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
