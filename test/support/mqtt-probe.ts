import mqtt, { type MqttClient } from 'mqtt';

/** A received message, payload decoded as UTF-8. */
export interface ReceivedMessage {
  topic: string;
  text: string;
  retain: boolean;
}

/**
 * A plain mqtt.js client that records every message on the topics it subscribes to, so
 * tests can wait for what the daemon publishes.
 */
export class MqttProbe {
  readonly messages: ReceivedMessage[] = [];
  private client: MqttClient | null = null;
  private readonly waiters = new Set<() => void>();

  constructor(private readonly url: string) {}

  async connect(topics: string[]): Promise<void> {
    this.client = await mqtt.connectAsync(this.url, { clientId: `probe-${Math.random().toString(16).slice(2)}`, reconnectPeriod: 200 });
    this.client.on('message', (topic, payload, packet) => {
      this.messages.push({ topic, text: payload.toString('utf8'), retain: packet.retain });
      for (const waiter of this.waiters) waiter();
    });
    await this.client.subscribeAsync(topics, { qos: 1 });
  }

  async publish(topic: string, payload: string | Buffer): Promise<void> {
    await this.client!.publishAsync(topic, payload, { qos: 1 });
  }

  on(topic: string): ReceivedMessage[] {
    return this.messages.filter((message) => message.topic === topic);
  }

  json<T>(topic: string): T[] {
    return this.on(topic).map((message) => JSON.parse(message.text) as T);
  }

  /** Resolves once `predicate` is true of the received messages, and rejects after `timeoutMs`. */
  waitFor(predicate: () => boolean, timeoutMs = 30_000, what = 'messages'): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!predicate()) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out waiting for ${what}; received ${this.messages.length} messages`));
      }, timeoutMs);
      this.waiters.add(check);
    });
  }

  async close(): Promise<void> {
    await this.client?.endAsync(true);
    this.client = null;
  }
}

/** Polls `predicate` every 50 ms until it holds; rejects after `timeoutMs`. */
export async function waitUntil(predicate: () => boolean, timeoutMs = 30_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
