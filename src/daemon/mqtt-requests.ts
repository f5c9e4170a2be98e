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

/** The part of the store that request intake needs. */
export interface RequestStore {
  enqueueInput(input: NewInput, jobs: NewJob[], rejected: RejectedRecord[], publications: OutboxMessage[]): EnqueueResult;
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
 */
export class RequestIntake {
  private readonly logger: Logger;
  private readonly clock: () => Date;

  constructor(private readonly options: RequestIntakeOptions) {
    this.logger = options.logger.child({ component: 'mqtt-intake' });
    this.clock = options.clock ?? (() => new Date());
  }

  handle(request: IncomingRequest): Promise<void> {
    const { store, topics } = this.options;
    const now = this.clock();
    const parsed = parseRequest(request.payload, { maxPayloadBytes: this.options.maxPayloadBytes });
    const requestId = parsed.requestId;
    const input: NewInput = {
      source: 'mqtt',
      inputKey: inputKeyFor(requestId, request.payload),
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
    const result = store.enqueueInput(input, jobs, rejected, publications);
    if (!result.inserted) {
      this.logger.info({ requestId, inputId: result.inputId }, 'duplicate request ignored');
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
 * Builds the input key. A request with an id is keyed by the id and the payload, so a
 * redelivered message stores nothing twice. NOTE: a request without an id gets a fresh key, so
 * a redelivery of it after a crash between commit and PUBACK runs again.
 */
function inputKeyFor(requestId: string | null, payload: Buffer): string {
  if (requestId === null) return `mqtt:anon:${randomUUID()}`;
  const digest = createHash('sha256').update(payload).digest('hex');
  return `mqtt:id:${requestId}:${digest}`;
}
