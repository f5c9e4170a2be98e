import { readFile } from 'node:fs/promises';
import { connect, type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import type { ResolvedConfig } from '../config/load';
import type { OutboxMessage } from '../contracts/store';
import type { Topics } from '../contracts/topics';
import type { Logger } from '../log';

/** One message received on the request topic. */
export interface IncomingRequest {
  topic: string;
  payload: Buffer;
  /** MQTT 5 response topic, when the request carried one. */
  responseTopic?: string;
  /** MQTT 5 correlation data, when the request carried it. */
  correlationData?: Buffer;
  /** Packet id of a QoS 1 or 2 message. QoS 0 messages have none. */
  messageId?: number;
}

export type MqttClientFactory = (url: string, options: IClientOptions) => MqttClient;

export interface MqttConnectionOptions {
  url: string;
  options: ResolvedConfig['mqtt'];
  topics: Topics;
  logger: Logger;
  /**
   * Stores a request durably. The message is acknowledged only after the promise resolves.
   * mqtt.js reads incoming packets one at a time, so no other packet (not even PINGRESP or the
   * PUBACK of a publish) is read while it runs. It must therefore not wait for the broker, and
   * it should finish well within the keepalive.
   */
  onRequest: (request: IncomingRequest) => Promise<void>;
  /**
   * Called on each CONNACK with its session-present flag, before any message of that
   * connection is handed to `onRequest`.
   */
  onSession?: (sessionPresent: boolean) => void;
  /** Called after each (re)connect, like a listener added with `onConnect()`. */
  onConnect?: () => void;
  clientFactory?: MqttClientFactory;
  /** MQTT protocol version: 4 (3.1.1, what aedes speaks) or 5 (response topic, correlation data). */
  protocolVersion?: 4 | 5;
  /** How long `start()` waits for the first connection before it resolves anyway, in ms. */
  startTimeoutMs?: number;
}

const DEFAULT_START_TIMEOUT_MS = 10_000;
const STOP_PUBLISH_TIMEOUT_MS = 5_000;

/**
 * The daemon's MQTT client: a persistent session (`clean: false`), a retained `offline` will
 * on the status topic, retained `online` and the request subscription on every (re)connect,
 * and acknowledgements of requests deferred until they are stored.
 */
export class MqttConnection {
  private readonly config: MqttConnectionOptions;
  private readonly logger: Logger;
  private readonly connectListeners = new Set<() => void>();
  private readonly pendingPublishes = new Set<(err: Error) => void>();
  private client: MqttClient | null = null;
  /** Incremented on every connect, so an acknowledgement never goes out on a later connection. */
  private generation = 0;
  private stopping = false;
  /** Set by `stop()`, so a `start()` still reading TLS files does not connect afterwards. */
  private stopRequested = false;
  private stopPromise: Promise<void> | null = null;
  /** Ends the wait of `start()` for the first connection when `stop()` comes first. */
  private cancelStartWait: (() => void) | null = null;
  private lastErrorMessage: string | null = null;
  private repeatedErrors = 0;
  private droppedVolatile = 0;

  constructor(options: MqttConnectionOptions) {
    this.config = options;
    this.logger = options.logger.child({ component: 'mqtt', url: redactPassword(options.url) });
    if (options.onConnect) this.connectListeners.add(options.onConnect);
  }

  /** Registers a listener called after each (re)connect, once `online` and the subscription are sent. */
  onConnect(listener: () => void): () => void {
    this.connectListeners.add(listener);
    return () => this.connectListeners.delete(listener);
  }

  /**
   * Connects. Resolves after the first connection or after `startTimeoutMs`, whichever comes
   * first. When the broker is not reachable, the client keeps retrying in the background.
   * Rejects when a TLS file cannot be read or the connection is already started.
   */
  async start(): Promise<void> {
    if (this.client) throw new Error('the MQTT connection is already started');
    this.stopping = false;
    this.stopRequested = false;

    const clientOptions = await this.buildClientOptions();
    if (this.stopRequested) return;
    const factory = this.config.clientFactory ?? connect;
    const client = factory(this.config.url, clientOptions);
    this.client = client;

    const firstConnect = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => finish(false), this.config.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
      const unsubscribe = this.onConnect(() => finish(true));
      const finish = (connected: boolean): void => {
        clearTimeout(timer);
        unsubscribe();
        this.cancelStartWait = null;
        resolve(connected);
      };
      this.cancelStartWait = () => finish(false);
    });

    client.on('connect', (connack) => this.handleConnect(client, connack.sessionPresent));
    // mqtt.js 5 honours `customHandleAcks` only for MQTT 5, so acknowledgements are deferred
    // through `handleMessage`, which it documents as overridable and which works for 3.1.1 too.
    client.handleMessage = (packet, callback) => this.handleMessage(packet, callback);
    client.on('close', () => this.handleClose());
    client.on('offline', () => this.logger.warn('disconnected from broker'));
    client.on('reconnect', () => this.logger.debug('reconnecting to broker'));
    client.on('error', (err) => this.logError(err));

    const connected = await firstConnect;
    if (!connected && this.client === client) {
      this.logger.warn('broker not reachable, retrying in the background');
    }
  }

  /** True while the client has a connection to the broker. */
  isConnected(): boolean {
    return this.client?.connected ?? false;
  }

  /**
   * Publishes one message. Resolves when the broker acknowledged it (QoS 1) or when it was
   * written (QoS 0). Rejects when the client is not connected, or when the connection closes
   * first. NOTE: mqtt.js still resends such a message after a reconnect, so a retry by the
   * caller can deliver it twice, as QoS 1 allows.
   */
  publish(message: OutboxMessage): Promise<void> {
    const client = this.client;
    if (!client || !client.connected || this.stopping) {
      return Promise.reject(new Error('the MQTT client is not connected'));
    }

    const properties: IPublishPacket['properties'] = {};
    if (this.protocolVersion() === 5 && message.correlationData) {
      properties.correlationData = Buffer.from(message.correlationData, 'base64');
    }

    return new Promise<void>((resolve, reject) => {
      const fail = (err: Error): void => {
        this.pendingPublishes.delete(fail);
        reject(err);
      };
      this.pendingPublishes.add(fail);
      client.publish(message.topic, message.payload, { qos: message.qos, retain: message.retain, properties }, (err) => {
        this.pendingPublishes.delete(fail);
        if (err) reject(err);
        else resolve();
      });
    });
  }

  /**
   * Publishes a QoS 0 message that is not retained, such as telemetry. While the client is not
   * connected the message is dropped, and drops are counted and logged once per disconnected period.
   */
  publishVolatile(topic: string, payload: string): void {
    const client = this.client;
    if (!client || !client.connected || this.stopping) {
      this.droppedVolatile += 1;
      if (this.droppedVolatile === 1) this.logger.warn({ topic }, 'QoS 0 message dropped while disconnected');
      return;
    }
    client.publish(topic, payload, { qos: 0, retain: false }, (err) => {
      if (err) this.logger.warn({ err, topic }, 'QoS 0 publish failed');
    });
  }

  /**
   * Publishes retained `stopped` on the status topic (when connected), then ends the client.
   * Safe to call twice.
   */
  stop(): Promise<void> {
    this.stopRequested = true;
    const client = this.client;
    if (!client) return Promise.resolve();
    this.stopPromise ??= this.stopClient(client);
    return this.stopPromise;
  }

  private async stopClient(client: MqttClient): Promise<void> {
    this.stopping = true;
    this.cancelStartWait?.();

    if (client.connected) {
      try {
        await withTimeout(
          client.publishAsync(this.config.topics.status, 'stopped', { qos: 1, retain: true }),
          STOP_PUBLISH_TIMEOUT_MS,
          'publishing the stopped status timed out',
        );
      } catch (err) {
        this.logger.warn({ err }, 'failed to publish the stopped status');
      }
    }

    try {
      // Without a connection, mqtt.js would wait for the PUBACKs of unsent messages forever.
      await withTimeout(client.endAsync(!client.connected), STOP_PUBLISH_TIMEOUT_MS, 'closing the MQTT connection timed out');
    } catch (err) {
      this.logger.warn({ err }, 'MQTT connection did not close in time, forcing it');
      await client.endAsync(true);
    }

    this.rejectPendingPublishes(new Error('the MQTT connection was stopped'));
    this.client = null;
    this.stopPromise = null;
    this.logger.info('MQTT connection stopped');
  }

  private protocolVersion(): 4 | 5 {
    return this.config.protocolVersion ?? 4;
  }

  private async buildClientOptions(): Promise<IClientOptions> {
    const mqtt = this.config.options;
    const tls = mqtt.tls;
    const readPem = async (setting: 'ca' | 'cert' | 'key', file: string | undefined): Promise<Buffer | undefined> => {
      if (file === undefined) return undefined;
      try {
        return await readFile(file);
      } catch (err) {
        throw new Error(`failed to read mqtt.tls.${setting} (${file}): ${(err as Error).message}`);
      }
    };

    const options: IClientOptions = {
      clientId: mqtt.clientId,
      clean: false,
      protocolVersion: this.protocolVersion(),
      keepalive: mqtt.keepaliveSeconds,
      reconnectPeriod: mqtt.reconnectPeriodMs,
      // Subscriptions are sent by handleConnect on every connect, so mqtt.js need not repeat them.
      resubscribe: false,
      will: { topic: this.config.topics.status, payload: Buffer.from('offline'), qos: 1, retain: true },
      rejectUnauthorized: tls.rejectUnauthorized,
    };
    if (this.protocolVersion() === 5) {
      // MQTT 5 ends a session at disconnect unless it has an expiry interval. 0xFFFFFFFF means
      // the session never expires, which matches `clean: false` in MQTT 3.1.1.
      options.properties = { sessionExpiryInterval: 0xffffffff };
    }
    if (mqtt.username !== undefined) options.username = mqtt.username;
    if (mqtt.password !== undefined) options.password = mqtt.password;

    const [ca, cert, key] = await Promise.all([readPem('ca', tls.ca), readPem('cert', tls.cert), readPem('key', tls.key)]);
    if (ca) options.ca = ca;
    if (cert) options.cert = cert;
    if (key) options.key = key;
    return options;
  }

  private handleConnect(client: MqttClient, sessionPresent: boolean): void {
    this.generation += 1;
    if (this.repeatedErrors > 0) {
      this.logger.info({ repeatedErrors: this.repeatedErrors }, 'connection errors before this connect');
    }
    this.lastErrorMessage = null;
    this.repeatedErrors = 0;
    if (this.droppedVolatile > 0) {
      this.logger.warn({ dropped: this.droppedVolatile }, 'QoS 0 messages dropped while disconnected');
      this.droppedVolatile = 0;
    }
    this.logger.info({ sessionPresent }, 'connected to broker');
    try {
      this.config.onSession?.(sessionPresent);
    } catch (err) {
      this.logger.error({ err, sessionPresent }, 'handling the session state of a new connection failed');
    }

    const topics = this.config.topics;
    const announce = async (): Promise<void> => {
      await client.publishAsync(topics.status, 'online', { qos: 1, retain: true });
      await client.subscribeAsync([topics.request, topics.variantsRequest], { qos: 1 });
    };
    announce().then(
      () => {
        for (const listener of [...this.connectListeners]) listener();
      },
      (err: unknown) => this.logger.error({ err }, 'failed to announce online status or subscribe'),
    );
  }

  /**
   * Hands every received message to `onRequest`. mqtt.js sends the PUBACK (QoS 1) or PUBCOMP
   * (QoS 2) only after this callback runs without an error, so a request is acknowledged only
   * once it is stored, and only on the connection it arrived on.
   */
  private handleMessage(packet: IPublishPacket, callback: (error?: Error) => void): void {
    const topic = packet.topic;
    if (topic !== this.config.topics.request && topic !== this.config.topics.variantsRequest) {
      this.logger.warn({ topic }, 'message on an unexpected topic acknowledged and ignored');
      callback();
      return;
    }

    const generation = this.generation;
    const request = toRequest(packet);
    this.config.onRequest(request).then(
      () => {
        if (packet.qos > 0 && (generation !== this.generation || !this.client?.connected)) {
          // The broker redelivers the message on the new connection, and the store deduplicates it.
          this.logger.debug({ messageId: request.messageId }, 'request stored after its connection closed, not acknowledged');
          callback(new Error('the connection of this message closed'));
          return;
        }
        callback();
      },
      (err: unknown) => {
        if (packet.qos === 0) {
          this.logger.error({ err }, 'QoS 0 request not stored and lost');
          callback();
          return;
        }
        this.logger.error({ err, messageId: request.messageId }, 'request not stored, dropping the connection so the broker redelivers it');
        callback(err instanceof Error ? err : new Error(String(err)));
        if (generation === this.generation) this.client?.stream.destroy();
      },
    );
  }

  private handleClose(): void {
    this.rejectPendingPublishes(new Error('the MQTT connection closed before the broker acknowledged the message'));
  }

  private rejectPendingPublishes(err: Error): void {
    for (const fail of [...this.pendingPublishes]) fail(err);
  }

  /** Logs the first of a run of identical errors at warn and the repeats at debug. */
  private logError(err: Error): void {
    if (err.message === this.lastErrorMessage) {
      this.repeatedErrors += 1;
      this.logger.debug({ err }, 'MQTT client error repeated');
      return;
    }
    this.lastErrorMessage = err.message;
    this.logger.warn({ err }, 'MQTT client error');
  }
}

function toRequest(packet: IPublishPacket): IncomingRequest {
  const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
  const request: IncomingRequest = { topic: packet.topic, payload };
  const responseTopic = packet.properties?.responseTopic;
  const correlationData = packet.properties?.correlationData;
  if (responseTopic !== undefined) request.responseTopic = responseTopic;
  if (correlationData !== undefined) request.correlationData = correlationData;
  if (packet.messageId !== undefined) request.messageId = packet.messageId;
  return request;
}

/** Returns the URL without its password, for logs. */
function redactPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password === '') return url;
    parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(invalid URL)';
  }
}

function withTimeout<T>(promise: Promise<T>, timeoutMs: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(message)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
