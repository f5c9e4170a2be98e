import type { OutboxMessage, OutboxRow } from '../contracts/store';
import type { Logger } from '../log';

/** The part of the store the publisher uses. */
export interface OutboxStore {
  /** Returns up to `limit` rows, oldest first. */
  peekOutbox(limit: number): OutboxRow[];
  deleteOutbox(id: number): void;
  /** Rewrites row `id` with `message`, keeping its place in the queue. */
  replaceOutbox(id: number, message: OutboxMessage): void;
  countOutbox(): number;
}

/** The part of `MqttConnection` the publisher uses. */
export interface OutboxConnection {
  publish(message: OutboxMessage): Promise<void>;
  isConnected(): boolean;
  onConnect(listener: () => void): () => void;
}

export interface OutboxPublisherOptions {
  store: OutboxStore;
  connection: OutboxConnection;
  logger: Logger;
  /** Highest publish rate, in messages per second. */
  maxPerSecond: number;
  /** Rows read from the outbox per query. */
  batchSize: number;
  /**
   * Largest payload published, in bytes (mqtt.maxPublishBytes). The broker would close the
   * connection on a larger row and the outbox would stall, so such a row is rewritten with the
   * message of `replaceOversized`, or deleted with an error log when there is none.
   */
  maxPayloadBytes?: number;
  /** Returns the message that replaces an oversized row (see oversizedReplacement), or null to drop the row. */
  replaceOversized?: (row: OutboxRow, bytes: number, limit: number) => OutboxMessage | null;
  /** Monotonic time in ms, for the rate limit. */
  now?: () => number;
}

/**
 * Drains the SQLite outbox to MQTT: oldest row first, one publish at a time, each row deleted
 * only after its publish resolved (PUBACK for QoS 1). A failed publish ends the drain and keeps
 * its row, and the next connect or `notify()` starts a new drain. Only one drain runs at a time.
 */
export class OutboxPublisher {
  private readonly options: OutboxPublisherOptions;
  private readonly logger: Logger;
  private readonly intervalMs: number;
  private readonly now: () => number;
  private running = false;
  private draining: Promise<void> | null = null;
  private drainRequested = false;
  private nextPublishAt = 0;
  private unsubscribe: (() => void) | null = null;
  private wakeSleeper: (() => void) | null = null;

  constructor(options: OutboxPublisherOptions) {
    this.options = options;
    this.logger = options.logger.child({ component: 'outbox-publisher' });
    this.intervalMs = options.maxPerSecond > 0 ? 1000 / options.maxPerSecond : 0;
    this.now = options.now ?? (() => performance.now());
  }

  /** Starts draining now and after every connect. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.unsubscribe = this.options.connection.onConnect(() => this.notify());
    this.notify();
  }

  /** Wakes the publisher after new outbox rows were committed. */
  notify(): void {
    if (!this.running) return;
    if (this.draining) {
      this.drainRequested = true;
      return;
    }
    this.draining = this.drain().finally(() => {
      this.draining = null;
      // A notify() that came after the last check of the loop in drain() is not lost.
      if (this.drainRequested) this.notify();
    });
  }

  /** Stops after the publish in flight, if any. Rows not yet published stay in the outbox. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.wakeSleeper?.();
    await this.draining;
  }

  private async drain(): Promise<void> {
    do {
      this.drainRequested = false;
      const sent = await this.drainOnce();
      if (sent > 0) {
        this.logger.debug({ sent, left: this.safeCount() }, 'outbox drained');
      }
    } while (this.drainRequested && this.running);
  }

  /**
   * Returns the row to publish: `row` itself when it fits maxPayloadBytes, the row rewritten in
   * the store with its replacement, or null when the row was deleted (or could not be changed
   * and is skipped).
   */
  private fitToLimit(row: OutboxRow): OutboxRow | null {
    const limit = this.options.maxPayloadBytes;
    if (limit === undefined) return row;
    const bytes = Buffer.byteLength(row.payload);
    if (bytes <= limit) return row;

    let replacement: OutboxMessage | null = null;
    try {
      replacement = this.options.replaceOversized?.(row, bytes, limit) ?? null;
    } catch (err) {
      this.logger.error({ err, outboxId: row.id }, 'failed to build the replacement of an oversized outbox message');
    }
    try {
      if (replacement && Buffer.byteLength(replacement.payload) <= limit) {
        this.options.store.replaceOutbox(row.id, replacement);
        this.logger.warn(
          { outboxId: row.id, topic: row.topic, bytes, maxPublishBytes: limit, replacementTopic: replacement.topic },
          'outbox message larger than mqtt.maxPublishBytes replaced by a REPLY_TOO_LARGE error',
        );
        return { ...row, ...replacement };
      }
      this.logger.error({ outboxId: row.id, topic: row.topic, bytes, maxPublishBytes: limit }, 'outbox message larger than mqtt.maxPublishBytes deleted unpublished');
      this.options.store.deleteOutbox(row.id);
    } catch (err) {
      this.logger.error({ err, outboxId: row.id }, 'failed to replace or delete an oversized outbox row, so it is skipped');
    }
    return null;
  }

  /** Publishes rows until the outbox is empty, the connection is lost or a publish fails. */
  private async drainOnce(): Promise<number> {
    const { store, connection, batchSize } = this.options;
    let sent = 0;

    while (this.running && connection.isConnected()) {
      let rows: OutboxRow[];
      try {
        rows = store.peekOutbox(batchSize);
      } catch (err) {
        this.logger.error({ err }, 'failed to read the outbox');
        return sent;
      }
      if (rows.length === 0) return sent;

      for (const peeked of rows) {
        const row = this.fitToLimit(peeked);
        if (!row) continue;
        await this.waitForRate();
        if (!this.running || !connection.isConnected()) return sent;

        try {
          await connection.publish(row);
        } catch (err) {
          this.logger.warn({ err, outboxId: row.id, topic: row.topic }, 'outbox publish failed, row kept for the next drain');
          return sent;
        }

        try {
          store.deleteOutbox(row.id);
        } catch (err) {
          // The message went out, so a later drain sends it again, which QoS 1 (at least once) allows.
          this.logger.error({ err, outboxId: row.id }, 'failed to delete a published outbox row');
          return sent;
        }
        sent += 1;
      }
    }
    return sent;
  }

  /** Sleeps until the rate limit allows the next publish. `stop()` cuts the sleep short. */
  private async waitForRate(): Promise<void> {
    const waitMs = this.nextPublishAt - this.now();
    if (waitMs > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, waitMs);
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.wakeSleeper = done;
      });
      this.wakeSleeper = null;
    }
    this.nextPublishAt = Math.max(this.nextPublishAt, this.now()) + this.intervalMs;
  }

  private safeCount(): number | null {
    try {
      return this.options.store.countOutbox();
    } catch {
      return null;
    }
  }
}
