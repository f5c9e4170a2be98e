import { createHash, randomUUID } from 'node:crypto';
import type { NewVariantRequest, OutboxMessage, StoredVariantRequest, VariantRequestRow } from '../contracts/store';
import { PAYLOAD_SCHEMA_VERSION, type Topics } from '../contracts/topics';
import type { Logger } from '../log';
import type { IncomingRequest } from '../mqtt/connection';
import { errorMessage } from '../queue/messages';
import type { VariantAnswer } from '../store';
import { parseVariantPayload, type ParsedVariantRequest } from './request';
import type { VariantResponse, VariantService } from './service';

/** The part of the store that variant request intake needs. */
export interface VariantRequestStore {
  storeVariantRequest(request: NewVariantRequest, redeliverySince: Date | null): StoredVariantRequest;
  storeAnsweredVariantRequest(request: NewVariantRequest, redeliverySince: Date | null, answer: VariantAnswer): StoredVariantRequest;
  startVariantAttempt(id: number): number;
  releaseVariantAttempt(id: number): void;
  answerVariantRequest(id: number, answer: VariantAnswer): boolean;
  listPendingVariantRequests(): VariantRequestRow[];
  pruneVariantRequests(olderThan: Date): number;
  addPublications(publications: OutboxMessage[]): void;
}

export interface VariantRequestIntakeOptions {
  service: Pick<VariantService, 'limits' | 'respond'>;
  store: VariantRequestStore;
  topics: Topics;
  /**
   * Age up to which a request without an id whose packet id and payload match a stored request
   * is taken for the broker's redelivery of it, in ms (mqtt.redeliveryWindowMs).
   */
  redeliveryWindowMs: number;
  /**
   * Scoring attempts of a request before it is answered with QUARANTINED instead of scored
   * again (queue.maxAttempts). An attempt that a graceful stop interrupts does not count.
   */
  maxAttempts: number;
  /** Age after which answered requests and their replies are deleted, in ms (variants.retentionHours). */
  retentionMs: number;
  /**
   * Largest reply published, in bytes (mqtt.maxPublishBytes). A larger reply is stored in full,
   * and a REPLY_TOO_LARGE error reply is published in its place.
   */
  maxPublishBytes: number;
  logger: Logger;
  /** Called after replies or error messages were added to the outbox. */
  onCommitted: () => void;
  clock?: () => Date;
}

/** A stored pending request waiting to be scored. */
interface QueuedRequest {
  row: Pick<VariantRequestRow, 'id' | 'requestId' | 'origin' | 'replyTopic' | 'correlationData' | 'attempts'>;
  parsed: ParsedVariantRequest;
}

/**
 * Replies to MQTT variant requests. `handle` parses a request and commits it to the store
 * before it resolves, so the message is acknowledged only once the request is stored. A thrown
 * store error rejects, and the message is not acknowledged. Scoring runs afterwards, one
 * request at a time in arrival order through the service's queue, because it can take minutes
 * and mqtt.js reads no other packet until the handler returns. The reply, and for an error
 * reply a message on the errors topic, are stored with the request's status in one transaction
 * and go out through the outbox. A rejected request is stored already answered.
 *
 * A request that repeats a stored one, by the same rules as prediction requests (see
 * RequestIntake), is not stored or scored again: an answered one gets its stored reply
 * published again, and a pending one is answered when its scoring finishes. `resume` queues the
 * requests that a previous process left pending, and `stop` leaves the queued ones pending.
 */
export class VariantRequestIntake {
  private readonly log: Logger;
  private readonly clock: () => Date;
  private readonly queue: QueuedRequest[] = [];
  /** Ids of the requests queued or being scored, so none is queued twice. */
  private readonly queuedIds = new Set<number>();
  /** Id of the request being scored, or null. */
  private current: number | null = null;
  private draining = false;
  private stopping = false;

  constructor(private readonly options: VariantRequestIntakeOptions) {
    this.log = options.logger.child({ component: 'mqtt-variants' });
    this.clock = options.clock ?? (() => new Date());
  }

  /** Stores the request, or answers a repeat, and queues a new valid request for scoring. Resolves once the message may be acknowledged. */
  async handle(request: IncomingRequest): Promise<void> {
    const { service, store, topics } = this.options;
    const now = this.clock();
    const parsed = parseVariantPayload(request.payload, service.limits);
    const requestId = parsed.ok ? parsed.request.id : parsed.id;
    const payloadHash = hashPayload(request.payload);
    const newRequest: NewVariantRequest = {
      requestKey: requestKeyFor(requestId, payloadHash),
      requestId,
      origin: request.topic,
      payload: request.payload,
      payloadHash,
      packetId: request.messageId ?? null,
      replyTopic: request.responseTopic ?? topics.variantsResponse,
      correlationData: request.correlationData?.toString('base64') ?? null,
    };
    // As for prediction requests, only a QoS 1 or 2 request without an id is matched by its packet id.
    const redeliverySince = requestId === null && request.messageId !== undefined ? new Date(now.getTime() - this.options.redeliveryWindowMs) : null;

    let stored: StoredVariantRequest;
    if (parsed.ok) {
      stored = store.storeVariantRequest(newRequest, redeliverySince);
    } else {
      const reply = await service.respond(parsed);
      stored = store.storeAnsweredVariantRequest(newRequest, redeliverySince, this.answerOf(newRequest, reply, now));
    }

    if (!stored.inserted) {
      this.answerRepeat(stored.request, request.messageId);
      return;
    }
    if (parsed.ok) {
      this.log.debug({ requestId, variantRequest: stored.request.id }, 'variant request stored');
      this.enqueue({ row: stored.request, parsed });
    } else {
      this.options.onCommitted();
    }
  }

  /**
   * Queues the requests that a previous process left pending, in arrival order, each parsed
   * again from its stored payload. Returns the number queued.
   */
  resume(): number {
    this.prune();
    const pending = this.options.store.listPendingVariantRequests().filter((row) => !this.queuedIds.has(row.id));
    for (const row of pending) this.requeue(row);
    if (pending.length > 0) this.log.info({ requests: pending.length }, 'scoring variant requests left pending by the previous process');
    return pending.length;
  }

  /**
   * Stops scoring. The queued requests and the one being scored stay pending for the next
   * start, and the interrupted attempt is taken back. Safe to call twice.
   */
  stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    if (this.current !== null) {
      try {
        this.options.store.releaseVariantAttempt(this.current);
      } catch (err) {
        this.log.error({ err, variantRequest: this.current }, 'taking back the interrupted scoring attempt failed');
      }
    }
    if (this.queuedIds.size > 0) this.log.info({ requests: this.queuedIds.size }, 'variant requests left pending for the next start');
  }

  /**
   * Publishes the stored reply of an answered request again, so a requester that repeats a
   * request after a lost reply gets one. A pending request is answered when its scoring
   * finishes, and is queued again if this process has not queued it.
   */
  private answerRepeat(row: VariantRequestRow, messageId: number | undefined): void {
    const ids = { requestId: row.requestId, variantRequest: row.id, messageId };
    if (row.status === 'answered' && row.reply !== null) {
      this.options.store.addPublications([replyPublication(row, this.publishable(row, row.reply))]);
      this.log.info(ids, 'repeated variant request answered again with the stored reply');
      this.options.onCommitted();
      return;
    }

    this.log.info(ids, 'repeated variant request ignored, the stored one is still pending');
    if (!this.stopping && !this.queuedIds.has(row.id)) this.requeue(row);
  }

  private requeue(row: VariantRequestRow): void {
    // A pending row always has a payload (a CHECK constraint of variant_requests).
    const parsed: ParsedVariantRequest =
      row.payload === null
        ? { ok: false, id: row.requestId, errors: [{ recordId: row.requestId ?? 'request', recordIndex: 0, code: 'INTERNAL', message: 'the stored request has no payload' }] }
        : parseVariantPayload(row.payload, this.options.service.limits);
    this.enqueue({ row, parsed });
  }

  private enqueue(item: QueuedRequest): void {
    if (this.queuedIds.has(item.row.id)) return;
    this.queuedIds.add(item.row.id);
    this.queue.push(item);
    if (this.draining || this.stopping) return;
    this.draining = true;
    void this.drain();
  }

  /** Scores the queued requests one at a time until the queue is empty or the intake stops. */
  private async drain(): Promise<void> {
    try {
      for (let item = this.queue.shift(); item !== undefined && !this.stopping; item = this.queue.shift()) {
        try {
          await this.score(item);
        } catch (err) {
          this.log.error({ err, requestId: item.row.requestId, variantRequest: item.row.id }, 'variant request left pending after an unexpected error');
        }
        this.queuedIds.delete(item.row.id);
      }
    } finally {
      this.draining = false;
    }
  }

  private async score(item: QueuedRequest): Promise<void> {
    const { row, parsed } = item;
    const { maxAttempts, service, store } = this.options;

    // A payload that passed the checks when it arrived fails them again only when the limits changed.
    if (!parsed.ok) {
      this.answer(row, await service.respond(parsed));
      return;
    }
    if (row.attempts >= maxAttempts) {
      this.log.error({ requestId: row.requestId, variantRequest: row.id, attempts: row.attempts, maxAttempts }, 'variant scoring interrupted in every allowed attempt, answering with QUARANTINED');
      this.answer(row, quarantinedReply(row.requestId, row.attempts, maxAttempts));
      return;
    }

    // NOTE: the attempt is counted before the service queue runs the scan, so a crash while an
    // HTTP request is being scored also counts an attempt of the waiting MQTT request.
    const attempts = store.startVariantAttempt(row.id);
    this.current = row.id;
    let reply: VariantResponse;
    try {
      reply = await service.respond(parsed);
    } finally {
      this.current = null;
    }
    if (this.stopping) {
      this.log.info({ requestId: row.requestId, variantRequest: row.id, attempts }, 'variant request left pending, the daemon is stopping');
      return;
    }
    this.answer(row, reply);
  }

  /** Stores the reply with the request's status and its messages. A failure leaves the request pending. */
  private answer(row: QueuedRequest['row'], reply: VariantResponse): void {
    try {
      const answered = this.options.store.answerVariantRequest(row.id, this.answerOf(row, reply, this.clock()));
      if (!answered) this.log.warn({ requestId: row.requestId, variantRequest: row.id }, 'variant request was already answered');
      this.options.onCommitted();
    } catch (err) {
      this.log.error({ err, requestId: row.requestId, variantRequest: row.id }, 'storing the variant reply failed, the request stays pending');
    }
    this.prune();
  }

  /** Deletes answered requests older than the retention. A failure is logged, and the next answer tries again. */
  private prune(): void {
    try {
      const deleted = this.options.store.pruneVariantRequests(new Date(this.clock().getTime() - this.options.retentionMs));
      if (deleted > 0) this.log.info({ deleted }, 'answered variant requests older than the retention deleted');
    } catch (err) {
      this.log.error({ err }, 'deleting old variant requests failed');
    }
  }

  /**
   * Returns the reply to publish: the stored reply itself, or a REPLY_TOO_LARGE error reply when
   * it is larger than maxPublishBytes, because the broker would refuse it.
   */
  private publishable(target: Pick<VariantRequestRow, 'requestId'> & { id?: number }, payload: string): string {
    const bytes = Buffer.byteLength(payload);
    const limit = this.options.maxPublishBytes;
    if (bytes <= limit) return payload;
    const stored = target.id === undefined ? 'it is stored in the variant_requests table' : `it is stored in variant_requests row ${target.id}`;
    const message = `the reply is ${bytes} bytes, larger than mqtt.maxPublishBytes (${limit}); ${stored}. Request fewer variants or "options": {"predictions": false}`;
    this.log.warn({ requestId: target.requestId, variantRequest: target.id, bytes, maxPublishBytes: limit }, 'variant reply too large to publish, error reply sent instead');
    // The error reply keeps the scan's latency. Only this rare path parses the large reply.
    const { latencyMs } = JSON.parse(payload) as Pick<VariantResponse, 'latencyMs'>;
    const reply: VariantResponse = {
      schemaVersion: PAYLOAD_SCHEMA_VERSION,
      id: target.requestId,
      status: 'error',
      errors: [{ recordId: target.requestId ?? 'request', recordIndex: 0, code: 'REPLY_TOO_LARGE', message }],
      latencyMs,
    };
    return JSON.stringify(reply);
  }

  /** Builds the stored reply and its messages: the reply on the reply topic and, for an error reply, an errors-topic message. */
  private answerOf(target: Pick<VariantRequestRow, 'origin' | 'replyTopic' | 'correlationData' | 'requestId'> & { id?: number }, reply: VariantResponse, now: Date): VariantAnswer {
    const payload = JSON.stringify(reply);
    const publications = [replyPublication(target, this.publishable(target, payload))];
    if (reply.status === 'error') {
      publications.push(errorMessage(this.options.topics, { source: 'mqtt', requestId: reply.id, origin: target.origin }, reply.errors, now));
    }
    return { reply: payload, publications };
  }
}

function replyPublication(target: Pick<VariantRequestRow, 'replyTopic' | 'correlationData'>, payload: string): OutboxMessage {
  return {
    topic: target.replyTopic,
    payload,
    qos: 1,
    retain: false,
    ...(target.correlationData === null ? {} : { correlationData: target.correlationData }),
  };
}

function quarantinedReply(id: string | null, attempts: number, maxAttempts: number): VariantResponse {
  const message = `scoring of this request was interrupted in ${attempts} of ${maxAttempts} allowed attempts, most likely because it crashed the daemon, so it is not retried`;
  return {
    schemaVersion: PAYLOAD_SCHEMA_VERSION,
    id,
    status: 'error',
    errors: [{ recordId: id ?? 'request', recordIndex: 0, code: 'QUARANTINED', message }],
    latencyMs: 0,
  };
}

/**
 * Builds the request key. A request with an id is keyed by the id and the payload hash, so a
 * repeated request stores nothing twice. A request without an id gets a random key, and its
 * redelivery is recognized by its packet id instead.
 */
function requestKeyFor(requestId: string | null, payloadHash: string): string {
  if (requestId === null) return `variants:anon:${randomUUID()}`;
  return `variants:id:${requestId}:${payloadHash}`;
}

/** Returns the SHA-256 of the payload as received, hex. */
function hashPayload(payload: Buffer): string {
  return createHash('sha256').update(payload).digest('hex');
}
