import { createHash, randomUUID } from 'node:crypto';
import type { Logger } from '../log';
import type { NewInput, RejectedRecord } from '../contracts/jobs';
import type { EnqueueResult, InputRow, JobOutcome, OutboxMessage } from '../contracts/store';
import type { Topics } from '../contracts/topics';
import type { NewJob } from '../contracts/jobs';
import { parseRequest } from '../mqtt/request';
import { prepareRecords } from '../intake/records';
import type { NucleotideOptions } from '../intake/orf-jobs';
import { errorMessage, responseMessage } from '../queue/messages';
import type { IncomingRequest } from '../mqtt/connection';
import type { RequestDelivery } from '../store';

/** The part of the store that request intake needs. */
export interface RequestStore {
  enqueueInput(input: NewInput, jobs: NewJob[], rejected: RejectedRecord[], publications: OutboxMessage[], delivery: RequestDelivery | null): EnqueueResult;
  addPublications(publications: OutboxMessage[]): void;
  clearMqttDeliveries(): number;
  getInput(inputId: number): InputRow | null;
  inputOutcomes(inputId: number): JobOutcome[];
  inputRejections(inputId: number): RejectedRecord[];
  finishInput(inputId: number, publications: OutboxMessage[]): boolean;
}

export interface RequestIntakeOptions {
  store: RequestStore;
  topics: Topics;
  maxPayloadBytes: number;
  minLength: number;
  /**
   * Age up to which a request without an id whose packet id and payload match a stored request
   * is taken for the broker's redelivery of it, in ms (mqtt.redeliveryWindowMs).
   */
  redeliveryWindowMs: number;
  /** Genetic code and ORF settings for DNA and RNA records. The configuration defaults apply when absent. */
  nucleotide?: NucleotideOptions;
  logger: Logger;
  /** Called after jobs or replies were committed. */
  onCommitted: () => void;
  onReceived: (records: number, rejected: number) => void;
  clock?: () => Date;
}

/**
 * Turns one MQTT request into stored jobs, or into a stored rejection with an error
 * message and a reply. It returns only after the commit, so the caller can acknowledge the
 * message then. A thrown error means nothing was stored, and the message must not be acked.
 *
 * A request that repeats a stored one is not stored or run again, and when the stored one is
 * finished its reply is sent again. A request with an id repeats a stored one when both its id
 * and its payload are equal. A QoS 1 request without an id repeats a stored one when the
 * broker delivered it under the same packet id with the same payload within
 * `redeliveryWindowMs`. A broker reuses a packet id only after the earlier message was
 * acknowledged. Mosquitto 2.0.11 and aedes 0.51 hand out each client's packet ids in turn up to
 * 65535, so a separate identical request gets another packet id unless 65,535 messages came in
 * between. The DUP flag is not used, because aedes redelivers with DUP 0.
 */
export class RequestIntake {
  private readonly logger: Logger;
  private readonly clock: () => Date;

  constructor(private readonly options: RequestIntakeOptions) {
    this.logger = options.logger.child({ component: 'mqtt-intake' });
    this.clock = options.clock ?? (() => new Date());
  }

  /**
   * Forgets the recorded packet ids when the broker starts a new session, because a new
   * session's packet ids are unrelated to those of the old one and nothing is redelivered.
   */
  sessionStarted(sessionPresent: boolean): void {
    if (sessionPresent) return;
    const forgotten = this.options.store.clearMqttDeliveries();
    if (forgotten > 0) this.logger.info({ forgotten }, 'new MQTT session, so the packet ids of stored requests were forgotten');
  }

  handle(request: IncomingRequest): Promise<void> {
    const { store, topics } = this.options;
    const now = this.clock();
    const parsed = parseRequest(request.payload, { maxPayloadBytes: this.options.maxPayloadBytes });
    const requestId = parsed.requestId;
    const payloadHash = hashPayload(request.payload);
    const input: NewInput = {
      source: 'mqtt',
      inputKey: inputKeyFor(requestId, payloadHash),
      requestId,
      origin: request.topic,
      reply: {
        responseTopic: request.responseTopic ?? topics.response,
        ...(request.correlationData ? { correlationData: request.correlationData.toString('base64') } : {}),
      },
    };

    let jobs: NewJob[] = [];
    let rejected: RejectedRecord[];
    if (parsed.ok) {
      const { minLength, nucleotide } = this.options;
      ({ jobs, rejected } = prepareRecords(parsed.records, parsed.rejected, { minLength, nucleotide, ...(parsed.kind ? { kind: parsed.kind } : {}) }));
    } else {
      rejected = [{ recordId: requestId ?? 'request', recordIndex: 0, code: parsed.code, message: parsed.message }];
    }

    const publications = rejected.length > 0 ? [errorMessage(topics, { source: 'mqtt', requestId, origin: request.topic }, rejected, now)] : [];
    const result = store.enqueueInput(input, jobs, rejected, publications, this.deliveryOf(request, requestId, payloadHash, now));
    if (!result.inserted) {
      this.answerRepeat(result.inputId, requestId, request.messageId);
      return Promise.resolve();
    }

    this.options.onReceived(jobs.length, rejected.length);
    if (rejected.length > 0) {
      this.logger.warn({ requestId, inputId: result.inputId, rejected: rejected.length, code: rejected[0].code }, 'request records rejected');
    }
    if (jobs.length === 0) this.replyNow(result.inputId);
    this.options.onCommitted();
    return Promise.resolve();
  }

  /** Returns the packet id record of a QoS 1 request. Only a request without an id is matched by it. */
  private deliveryOf(request: IncomingRequest, requestId: string | null, payloadHash: string, now: Date): RequestDelivery | null {
    if (request.messageId === undefined) return null;
    const redeliverySince = requestId === null ? new Date(now.getTime() - this.options.redeliveryWindowMs) : null;
    return { packetId: request.messageId, payloadHash, redeliverySince };
  }

  /**
   * Sends the reply of a repeated request again when its input is finished, so a requester
   * that repeats a request after a lost reply gets one. An open input replies when it finishes.
   */
  private answerRepeat(inputId: number, requestId: string | null, messageId: number | undefined): void {
    const { store, topics } = this.options;
    const input = store.getInput(inputId);
    if (input === null || input.status !== 'finished') {
      this.logger.info({ requestId, inputId, messageId }, 'repeated request ignored, its input is still open');
      return;
    }
    const reply = responseMessage(input, store.inputOutcomes(inputId), store.inputRejections(inputId), topics.response);
    store.addPublications([reply]);
    this.logger.info({ requestId, inputId, messageId }, 'repeated request answered again from the stored results');
    this.options.onCommitted();
  }

  /** Replies at once, with its errors, to an input without valid records. */
  private replyNow(inputId: number): void {
    const { store, topics } = this.options;
    const input = store.getInput(inputId);
    if (!input) return;
    const reply = responseMessage(input, store.inputOutcomes(inputId), store.inputRejections(inputId), topics.response);
    store.finishInput(inputId, [reply]);
  }
}

/**
 * Builds the input key. A request with an id is keyed by the id and the hash, so a repeated
 * request stores nothing twice. A request without an id gets a fresh key, and its redelivery is
 * recognized by its packet id instead (see `RequestIntake`).
 */
function inputKeyFor(requestId: string | null, payloadHash: string): string {
  if (requestId === null) return `mqtt:anon:${randomUUID()}`;
  return `mqtt:id:${requestId}:${payloadHash}`;
}

/** Returns the SHA-256 of the payload, hex. Requests arrive on one topic only, so the topic is left out. */
function hashPayload(payload: Buffer): string {
  return createHash('sha256').update(payload).digest('hex');
}
