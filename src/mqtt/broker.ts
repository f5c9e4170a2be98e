import { createServer, Socket, type Server } from 'node:net';
import { createBroker, type Client, type PublishPacket } from 'aedes';
import type { Logger } from '../log';

type Aedes = ReturnType<typeof createBroker>;

/** A message the embedded broker accepted from a client, as passed to `onPublish`. */
export interface BrokerPublish {
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  retain: boolean;
  /** Id of the publishing client. */
  clientId: string;
}

export interface EmbeddedBrokerOptions {
  /** Address to listen on. Keep it a loopback address unless other hosts must connect. */
  host: string;
  /** TCP port; 0 picks a free port, which `start()` returns. */
  port: number;
  logger: Logger;
  /**
   * Largest PUBLISH payload the broker accepts. A larger one is rejected and, as MQTT 3.1.1
   * has no negative acknowledgement, aedes closes the sender's connection. Unset: no limit.
   */
  maxPayloadBytes?: number;
  /** Called for every message a client publishes (not for the broker's own $SYS messages). */
  onPublish?: (message: BrokerPublish) => void;
}

/**
 * The in-process MQTT 3.1.1 broker (aedes) on a TCP server bound to one address, so the
 * daemon runs with no other software. Sessions and retained messages live in memory and are
 * lost on `stop()`.
 */
export class EmbeddedBroker {
  private readonly options: EmbeddedBrokerOptions;
  private readonly logger: Logger;
  private broker: Aedes | null = null;
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();

  constructor(options: EmbeddedBrokerOptions) {
    this.options = options;
    this.logger = options.logger.child({ component: 'embedded-broker' });
  }

  /** Starts listening and returns the bound address (the real port when the port was 0). */
  async start(): Promise<{ host: string; port: number }> {
    if (this.server) throw new Error('the embedded broker is already started');

    const broker = createBroker({
      authorizePublish: (client, packet, callback) => this.authorizePublish(client, packet, callback),
    });
    broker.on('clientError', (client: Client, err: Error) => {
      this.logger.debug({ err, clientId: client.id }, 'client error');
    });
    broker.on('connectionError', (_client: Client, err: Error) => {
      this.logger.debug({ err }, 'connection error');
    });

    const server = createServer((socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      broker.handle(socket);
    });

    this.broker = broker;
    this.server = server;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.options.port, this.options.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      this.server = null;
      this.broker = null;
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      throw err;
    }

    const address = server.address();
    if (address === null || typeof address === 'string') {
      throw new Error('the embedded broker has no TCP address');
    }
    this.logger.info({ host: this.options.host, port: address.port }, 'embedded broker listening');
    return { host: this.options.host, port: address.port };
  }

  /** Closes every client connection, the broker and the server. Safe to call twice. */
  async stop(): Promise<void> {
    const server = this.server;
    const broker = this.broker;
    this.server = null;
    this.broker = null;
    if (!server || !broker) return;

    const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    await serverClosed;
    this.logger.info('embedded broker stopped');
  }

  private authorizePublish(client: Client | null, packet: PublishPacket, callback: (error?: Error | null) => void): void {
    const limit = this.options.maxPayloadBytes;
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    if (limit !== undefined && payload.length > limit) {
      this.logger.warn({ clientId: client?.id, topic: packet.topic, bytes: payload.length, limit }, 'publish rejected: payload too large');
      callback(new Error(`payload of ${payload.length} bytes exceeds the limit of ${limit} bytes`));
      return;
    }

    if (client && this.options.onPublish) {
      this.options.onPublish({ topic: packet.topic, payload, qos: packet.qos, retain: packet.retain, clientId: client.id });
    }
    callback(null);
  }
}

/**
 * Probes whether something accepts TCP connections on `host:port`, for `broker: auto`. It
 * does not check that the listener speaks MQTT. Returns false on refusal, error or timeout.
 */
export function isBrokerListening(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    let settled = false;
    const finish = (listening: boolean): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(listening);
    };

    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
    socket.connect(port, host);
  });
}
