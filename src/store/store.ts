import type Database from 'better-sqlite3';
import type { JobSource, JobStatus, NewInput, NewJob, RejectedRecord } from '../contracts/jobs';
import type { Prediction, PredictOptions } from '../contracts/prediction';
import type {
  BeginInputResult,
  EnqueueResult,
  InputRow,
  JobOutcome,
  JobResult,
  JobRow,
  NewVariantRequest,
  OutboxMessage,
  OutboxRow,
  StoredVariantRequest,
  VariantRequestRow,
} from '../contracts/store';
import type { Logger } from '../log';
import { openDatabase, withSynchronousFull } from './db';
import { JobStateError } from './errors';
import { DEFAULT_DROP_WARNING_INTERVAL_MS, OutboxDropWarnings } from './outbox-drops';
import { orfColumns, toInputRow, toJobOutcome, toJobRow, toOutboxRow, toRejectedRecord } from './rows';
import { prepareStatements, type Statements } from './statements';
import { prepareVariantRequests, toVariantRequestRow, type VariantAnswer, type VariantRequestTransactions } from './variant-requests';

export interface StoreOptions {
  /** Path of the SQLite file; `databaseFile(folders.data)` gives the usual one. */
  file: string;
  logger: Logger;
  clock?: () => Date;
  /**
   * Maximum rows in the outbox. A commit that would exceed it deletes the oldest rows and adds
   * them to the persistent `outbox_dropped` counter. Absent means unbounded.
   */
  outboxMaxMessages?: number;
  /** Minimum time between two warnings about dropped outbox rows, in ms; default 60 s. */
  dropWarningIntervalMs?: number;
}

/** The MQTT delivery of a request, with which `enqueueInput` recognizes a broker's redelivery. */
export interface RequestDelivery {
  /** Packet identifier of the QoS 1 or 2 PUBLISH, 1 to 65535. */
  packetId: number;
  /** SHA-256 of the payload, hex. */
  payloadHash: string;
  /**
   * An input stored under the same packet id and hash at or after this time is taken for the
   * same request. Null stores the delivery without looking for one.
   */
  redeliverySince: Date | null;
}

/** Name of the `counters` row with the total of outbox rows dropped at the bound. */
const OUTBOX_DROPPED_COUNTER = 'outbox_dropped';

/** Connection, prepared statements and transaction functions, which exist only while the store is open. */
interface OpenState {
  db: Database.Database;
  statements: Statements;
  enqueue: Database.Transaction<
    (input: NewInput, jobs: NewJob[], rejected: RejectedRecord[], publications: OutboxMessage[], delivery: RequestDelivery | null) => EnqueueResult
  >;
  publish: Database.Transaction<(publications: OutboxMessage[]) => void>;
  claim: Database.Transaction<(limit: number) => JobRow[]>;
  release: Database.Transaction<(jobIds: number[]) => number>;
  retry: Database.Transaction<(jobIds: number[], retryAfter: string) => number>;
  complete: Database.Transaction<(jobId: number, result: JobResult, publications: OutboxMessage[]) => void>;
  completeMany: Database.Transaction<(items: CompletedJob[]) => void>;
  fail: Database.Transaction<(jobId: number, code: string, message: string, publications: OutboxMessage[]) => void>;
  finish: Database.Transaction<(inputId: number, publications: OutboxMessage[]) => boolean>;
  begin: Database.Transaction<(input: NewInput) => BeginInputResult>;
  append: Database.Transaction<(inputId: number, jobs: NewJob[], rejected: RejectedRecord[], publications: OutboxMessage[]) => number[]>;
  trim: Database.Transaction<(maxRows: number) => number>;
  variants: VariantRequestTransactions;
}

/** A job's result and the messages to publish with it, for Store.completeJobs. */
export interface CompletedJob {
  jobId: number;
  result: JobResult;
  publications: OutboxMessage[];
}

/**
 * The daemon's SQLite database: inputs, jobs, results, rejected records, MQTT variant
 * requests, the MQTT outbox and telemetry. The daemon keeps one Store per file as its only writer. Every method is synchronous (better-sqlite3), and
 * every method except `open` and `close` requires an open store.
 */
export class Store {
  readonly file: string;
  private readonly logger: Logger;
  private readonly clock: () => Date;
  private readonly outboxMaxMessages: number | null;
  private readonly dropWarnings: OutboxDropWarnings;
  private state: OpenState | null = null;
  /** Rows the last transaction dropped at the outbox bound, reported once it committed. */
  private droppedInTransaction = 0;

  constructor(options: StoreOptions) {
    this.file = options.file;
    this.logger = options.logger.child({ component: 'store' });
    this.clock = options.clock ?? (() => new Date());
    if (options.outboxMaxMessages !== undefined) checkCount('outboxMaxMessages', options.outboxMaxMessages);
    this.outboxMaxMessages = options.outboxMaxMessages ?? null;
    this.dropWarnings = new OutboxDropWarnings(
      this.logger,
      this.outboxMaxMessages ?? 0,
      options.dropWarningIntervalMs ?? DEFAULT_DROP_WARNING_INTERVAL_MS,
      () => this.clock().getTime(),
    );
  }

  /** Opens the file, checks its integrity, applies missing migrations and prepares the statements. */
  open(): void {
    if (this.state !== null) throw new Error(`store ${this.file} is already open`);

    const { db, schemaVersion, appliedVersions } = openDatabase(this.file, this.logger, this.clock);
    let statements: Statements;
    let variants: VariantRequestTransactions;
    // Every transaction that can add outbox rows ends by enforcing the outbox bound.
    const bounded = <A extends unknown[], R>(body: (...args: A) => R) => (...args: A): R => {
      const result = body(...args);
      this.enforceOutboxBound(statements);
      return result;
    };
    try {
      statements = prepareStatements(db);
      variants = prepareVariantRequests(db, {
        clock: this.clock,
        addPublications: (publications, createdAt) => insertPublications(statements, publications, createdAt),
        bounded,
      });
    } catch (err) {
      db.close();
      throw err;
    }
    this.state = {
      db,
      statements,
      variants,
      enqueue: db.transaction(
        bounded((input: NewInput, jobs: NewJob[], rejected: RejectedRecord[], publications: OutboxMessage[], delivery: RequestDelivery | null) => {
          const result = this.enqueueInTransaction(statements, input, jobs, rejected, publications, delivery);
          // The packet id now names this prediction request, so no variant request keeps it.
          if (delivery !== null) variants.statements.forgetPacketId.run(delivery.packetId);
          return result;
        }),
      ),
      publish: db.transaction(bounded((publications: OutboxMessage[]) => insertPublications(statements, publications, this.clock().toISOString()))),
      claim: db.transaction((limit: number) => this.claimInTransaction(statements, limit)),
      release: db.transaction((jobIds: number[]) => jobIds.reduce((count, id) => count + statements.releaseJob.run(id).changes, 0)),
      retry: db.transaction((jobIds: number[], retryAfter: string) =>
        jobIds.reduce((count, id) => count + statements.retryJob.run(retryAfter, id).changes, 0),
      ),
      complete: db.transaction(
        bounded((jobId: number, result: JobResult, publications: OutboxMessage[]) =>
          this.completeInTransaction(statements, jobId, result, publications),
        ),
      ),
      completeMany: db.transaction(
        bounded((items: CompletedJob[]) => {
          for (const item of items) this.completeInTransaction(statements, item.jobId, item.result, item.publications);
        }),
      ),
      fail: db.transaction(
        bounded((jobId: number, code: string, message: string, publications: OutboxMessage[]) =>
          this.failInTransaction(statements, jobId, code, message, publications),
        ),
      ),
      finish: db.transaction(
        bounded((inputId: number, publications: OutboxMessage[]) => this.finishInTransaction(statements, inputId, publications)),
      ),
      begin: db.transaction((input: NewInput) => this.beginInTransaction(statements, input)),
      append: db.transaction(
        bounded((inputId: number, jobs: NewJob[], rejected: RejectedRecord[], publications: OutboxMessage[]) =>
          this.appendInTransaction(statements, inputId, jobs, rejected, publications),
        ),
      ),
      trim: db.transaction((maxRows: number) => dropOldestOutboxRows(statements, maxRows)),
    };
    this.logger.info({ file: this.file, schemaVersion, appliedMigrations: appliedVersions }, 'database opened');
  }

  /**
   * Checkpoints the WAL into the database file (TRUNCATE) and closes the connection. Safe to
   * call twice. The checkpoint waits up to BUSY_TIMEOUT_MS for outside readers to finish.
   */
  close(): void {
    const state = this.state;
    if (state === null) return;
    this.state = null;
    this.dropWarnings.flush(state.statements.counterValue.get(OUTBOX_DROPPED_COUNTER) ?? 0);

    // An incomplete checkpoint loses nothing: the commits stay in the WAL for the next open.
    try {
      const outcome = state.statements.checkpointTruncate.get();
      if (outcome !== undefined && outcome.busy !== 0) {
        this.logger.warn({ file: this.file, ...outcome }, 'WAL checkpoint at close incomplete because a reader is active');
      }
    } catch (err) {
      this.logger.warn({ err, file: this.file }, 'WAL checkpoint at close failed');
    }
    state.db.close();
    this.logger.info({ file: this.file }, 'database closed');
  }

  /**
   * Stores an input with its jobs, rejected records and messages in one durable transaction.
   * When an input with the same key exists, inserts nothing and returns its id and job ids.
   * An input without jobs is stored as open too, so the caller finishes it with `finishInput`.
   * With a `delivery`, an input stored under the same packet id and payload hash since
   * `delivery.redeliverySince` counts as the same input too, and the delivery is recorded
   * under its packet id in the same transaction.
   */
  enqueueInput(
    input: NewInput,
    jobs: NewJob[],
    rejected: RejectedRecord[],
    publications: OutboxMessage[],
    delivery: RequestDelivery | null = null,
  ): EnqueueResult {
    const state = this.requireOpen();
    const result = this.commit(state, () => state.enqueue.immediate(input, jobs, rejected, publications, delivery));
    if (result.inserted) {
      this.logger.debug({ inputId: result.inputId, jobs: jobs.length, rejected: rejected.length }, 'input stored');
    } else {
      this.logger.debug({ inputId: result.inputId, inputKey: input.inputKey }, 'input already stored');
    }
    return result;
  }

  /**
   * Stores an input row marked incomplete, whose records follow in chunks through
   * `appendInputRecords` and which `completeInput` marks complete. An incomplete input is never
   * listed by `listCompleteOpenInputs`. When an input with the same key exists, inserts nothing
   * and returns it with the highest record index stored so far, so an interrupted input resumes.
   */
  beginInput(input: NewInput): BeginInputResult {
    const state = this.requireOpen();
    return withSynchronousFull(state.db, () => state.begin.immediate(input));
  }

  /**
   * Stores one chunk of an input's jobs, rejected records and messages in one durable
   * transaction. Jobs and rejections whose record index (and code) the input already has are
   * skipped, so a chunk stored twice adds nothing. Returns the ids of the jobs inserted.
   */
  appendInputRecords(inputId: number, jobs: NewJob[], rejected: RejectedRecord[], publications: OutboxMessage[]): number[] {
    const state = this.requireOpen();
    return this.commit(state, () => state.append.immediate(inputId, jobs, rejected, publications));
  }

  /** Marks an input stored with `beginInput` complete. Returns false when it already was. Throws when it does not exist. */
  completeInput(inputId: number): boolean {
    const state = this.requireOpen();
    return withSynchronousFull(state.db, () => {
      if (state.statements.markInputComplete.run(inputId).changes > 0) return true;
      if (state.statements.inputComplete.get(inputId) === undefined) throw new Error(`cannot complete input ${inputId}: input not found`);
      return false;
    });
  }

  /** Moves jobs that a previous process left running back to pending. Returns the number moved. */
  requeueRunningJobs(): number {
    return this.requireOpen().statements.requeueRunningJobs.run().changes;
  }

  /** Marks up to `limit` pending jobs as running, oldest id first, and returns them. */
  claimPendingJobs(limit: number): JobRow[] {
    checkCount('limit', limit);
    return this.requireOpen().claim.immediate(limit);
  }

  /**
   * Moves running jobs back to pending, for a graceful stop. Jobs in another status are left
   * unchanged. `attempts` keeps counting the claim.
   */
  releaseJobs(jobIds: number[]): void {
    if (jobIds.length === 0) return;
    const released = this.requireOpen().release.immediate(jobIds);
    if (released < jobIds.length) {
      this.logger.warn({ requested: jobIds.length, released }, 'some released jobs were not running');
    }
  }

  /**
   * Moves running jobs back to pending, to be claimed no earlier than `retryAfter`, after a
   * failed inference. `attempts` keeps counting the claim.
   */
  retryJobs(jobIds: number[], retryAfter: Date): void {
    if (jobIds.length === 0) return;
    const moved = this.requireOpen().retry.immediate(jobIds, retryAfter.toISOString());
    if (moved < jobIds.length) {
      this.logger.warn({ requested: jobIds.length, moved }, 'some jobs sent back for a retry were not running');
    }
  }

  /**
   * Forgets every recorded MQTT delivery, of prediction and variant requests, for a new MQTT
   * session, whose packet ids are unrelated to those of the old one. Returns the number forgotten.
   */
  clearMqttDeliveries(): number {
    const state = this.requireOpen();
    const clear = state.db.transaction(
      () => state.statements.clearDeliveries.run().changes + state.variants.statements.clearPacketIds.run().changes,
    );
    return clear.immediate();
  }

  /**
   * Stores an MQTT variant request as pending in one durable transaction, or finds the stored
   * request it repeats and inserts nothing. A request repeats a stored one with the same
   * `requestKey`, and, when `redeliverySince` is set, one stored under the same packet id and
   * payload hash at or after that time. The packet id of the delivery is cleared from every
   * other stored request, because a broker reuses a packet id only after an acknowledgement.
   */
  storeVariantRequest(request: NewVariantRequest, redeliverySince: Date | null = null): StoredVariantRequest {
    const state = this.requireOpen();
    return this.commit(state, () => state.variants.store.immediate(request, redeliverySince, null));
  }

  /**
   * Stores a rejected variant request as answered, with its reply and messages, in one durable
   * transaction. A repeated request inserts nothing, as in `storeVariantRequest`.
   */
  storeAnsweredVariantRequest(request: NewVariantRequest, redeliverySince: Date | null, answer: VariantAnswer): StoredVariantRequest {
    const state = this.requireOpen();
    return this.commit(state, () => state.variants.store.immediate(request, redeliverySince, answer));
  }

  /**
   * Counts one more scoring attempt of a pending variant request, durably, and returns its
   * attempts so far. Throws when the request is not pending.
   */
  startVariantAttempt(id: number): number {
    const { db, variants } = this.requireOpen();
    return withSynchronousFull(db, () => {
      const attempts = variants.statements.addAttempt.get(id);
      if (attempts === undefined) throw new Error(`cannot start scoring variant request ${id}: request not found or already answered`);
      return attempts;
    });
  }

  /** Takes back the attempt of a pending variant request whose scoring a graceful stop interrupted. */
  releaseVariantAttempt(id: number): void {
    this.requireOpen().variants.statements.releaseAttempt.run(id);
  }

  /**
   * Marks a pending variant request answered with its reply and adds the messages, in one
   * durable transaction. Returns false, and adds nothing, when it is already answered. Throws
   * when it does not exist.
   */
  answerVariantRequest(id: number, answer: VariantAnswer): boolean {
    const state = this.requireOpen();
    return this.commit(state, () => state.variants.answer.immediate(id, answer));
  }

  /** Returns the pending variant requests in arrival order. */
  /** Deletes answered variant requests that were answered before `olderThan`, with their replies. Returns the number deleted. */
  pruneVariantRequests(olderThan: Date): number {
    return this.requireOpen().variants.statements.pruneAnswered.run(olderThan.toISOString()).changes;
  }

  listPendingVariantRequests(): VariantRequestRow[] {
    return this.requireOpen().variants.statements.pendingRequests.all().map(toVariantRequestRow);
  }

  getVariantRequest(id: number): VariantRequestRow | null {
    const record = this.requireOpen().variants.statements.requestById.get(id);
    return record === undefined ? null : toVariantRequestRow(record);
  }

  /** Adds messages to the outbox in one durable transaction. */
  addPublications(publications: OutboxMessage[]): void {
    if (publications.length === 0) return;
    const state = this.requireOpen();
    this.commit(state, () => state.publish.immediate(publications));
  }

  /** Counts one more failed ingest attempt of an inbox file, durably, and returns its attempts so far. */
  recordIngestFailure(fileKey: string, message: string): number {
    const state = this.requireOpen();
    return withSynchronousFull(state.db, () => {
      const attempts = state.statements.addIngestAttempt.get(fileKey, message, this.clock().toISOString());
      if (attempts === undefined) throw new Error(`counting an ingest attempt of ${fileKey} returned no row`);
      return attempts;
    });
  }

  /** Forgets the failed ingest attempts of an inbox file. */
  clearIngestFailures(fileKey: string): void {
    this.requireOpen().statements.deleteIngestAttempts.run(fileKey);
  }

  /**
   * Returns the prediction of the latest result for this sequence hash and model, or null. With
   * `options.residues` only a prediction with per-residue output matches, and without it only one without.
   */
  findCachedPrediction(sequenceHash: string, modelId: string, options?: PredictOptions): Prediction | null {
    const json = this.requireOpen().statements.latestPrediction.get(sequenceHash, modelId, options?.residues === true ? 1 : 0);
    return json === undefined ? null : (JSON.parse(json) as Prediction);
  }

  /**
   * Stores the result, marks the job done and adds the messages, in one durable transaction.
   * Throws JobStateError unless the job is pending or running.
   */
  completeJob(jobId: number, result: JobResult, publications: OutboxMessage[]): void {
    const state = this.requireOpen();
    this.commit(state, () => state.complete.immediate(jobId, result, publications));
  }

  /**
   * Completes several jobs as completeJob does, in one durable transaction: all of them or,
   * when one throws, none. One fsync for a batch in place of one per job.
   */
  completeJobs(items: CompletedJob[]): void {
    const state = this.requireOpen();
    this.commit(state, () => state.completeMany.immediate(items));
  }

  /**
   * Marks the job failed with an error code and message and adds the messages, in one durable
   * transaction. Throws JobStateError unless the job is pending or running.
   */
  failJob(jobId: number, code: string, message: string, publications: OutboxMessage[]): void {
    const state = this.requireOpen();
    this.commit(state, () => state.fail.immediate(jobId, code, message, publications));
  }

  getInput(inputId: number): InputRow | null {
    const record = this.requireOpen().statements.inputById.get(inputId);
    return record === undefined ? null : toInputRow(record);
  }

  findInputByKey(inputKey: string): InputRow | null {
    const record = this.requireOpen().statements.inputByKey.get(inputKey);
    return record === undefined ? null : toInputRow(record);
  }

  /** True when the input exists, all its records are stored, and none of its jobs is pending or running. */
  isInputComplete(inputId: number): boolean {
    const { statements } = this.requireOpen();
    if (statements.inputComplete.get(inputId) !== 1) return false;
    return statements.inputHasUnfinishedJobs.get(inputId) === 0;
  }

  /** Returns the open inputs, oldest first, that have no pending or running job. */
  listCompleteOpenInputs(source?: JobSource): InputRow[] {
    const records = this.requireOpen().statements.completeOpenInputs.all({ source: source ?? null });
    return records.map(toInputRow);
  }

  /**
   * Returns the done and failed jobs of the input with their result or error, by record index.
   * Jobs still pending or running are left out, so check `isInputComplete` first.
   */
  inputOutcomes(inputId: number): JobOutcome[] {
    return this.requireOpen()
      .statements.outcomePageOfInput.all({ input_id: inputId, record_index: -1, job_id: -1, limit: -1 })
      .map(toJobOutcome);
  }

  /**
   * Returns up to `limit` finished jobs of an input in the order of inputOutcomes, starting after
   * the job `after`: the last one of the previous page, or null for the first page. Reading a
   * large input page by page keeps only one page of predictions in memory.
   */
  inputOutcomePage(inputId: number, after: Pick<JobOutcome, 'recordIndex' | 'jobId'> | null, limit: number): JobOutcome[] {
    checkCount('limit', limit);
    const position = after ?? { recordIndex: -1, jobId: -1 };
    return this.requireOpen()
      .statements.outcomePageOfInput.all({ input_id: inputId, record_index: position.recordIndex, job_id: position.jobId, limit })
      .map(toJobOutcome);
  }

  /** Counts the finished jobs of an input by status. */
  inputOutcomeCounts(inputId: number): { done: number; failed: number } {
    const counts = { done: 0, failed: 0 };
    for (const row of this.requireOpen().statements.outcomeCountsOfInput.all(inputId)) counts[row.status] = row.n;
    return counts;
  }

  /** Returns the records of the input rejected at intake, by record index. */
  inputRejections(inputId: number): RejectedRecord[] {
    return this.requireOpen().statements.rejectionsOfInput.all(inputId).map(toRejectedRecord);
  }

  /**
   * Marks an open input finished and adds the messages, in one durable transaction. Returns
   * false, and adds nothing, when the input is already finished. Throws when it does not exist.
   */
  finishInput(inputId: number, publications: OutboxMessage[]): boolean {
    const state = this.requireOpen();
    return this.commit(state, () => state.finish.immediate(inputId, publications));
  }

  /** Returns up to `limit` outbox messages, oldest first. */
  peekOutbox(limit: number): OutboxRow[] {
    checkCount('limit', limit);
    return this.requireOpen().statements.peekOutbox.all(limit).map(toOutboxRow);
  }

  deleteOutbox(id: number): void {
    this.requireOpen().statements.deleteOutbox.run(id);
  }

  /** Rewrites outbox row `id` with `message`, keeping its place in the queue. */
  replaceOutbox(id: number, message: OutboxMessage): void {
    this.requireOpen().statements.replaceOutbox.run({
      id,
      topic: message.topic,
      payload: message.payload,
      qos: message.qos,
      retain: message.retain ? 1 : 0,
      correlation_data: message.correlationData ?? null,
    });
  }

  /** Returns the index of job `jobId`'s record in its input, or null when there is no such job. */
  jobRecordIndex(jobId: number): number | null {
    return this.requireOpen().statements.jobRecordIndex.get(jobId) ?? null;
  }

  countOutbox(): number {
    return this.requireOpen().statements.countOutbox.get() ?? 0;
  }

  /**
   * Deletes the oldest outbox messages beyond the newest `maxRows` and adds them to the
   * `outbox_dropped` counter. Returns the number deleted.
   */
  trimOutbox(maxRows: number): number {
    checkCount('maxRows', maxRows);
    const state = this.requireOpen();
    const dropped = state.trim.immediate(maxRows);
    if (dropped > 0) this.dropWarnings.record(dropped, this.outboxDroppedTotal());
    return dropped;
  }

  /** Returns the number of outbox messages dropped unsent at the outbox bound, over the life of the file. */
  outboxDroppedTotal(): number {
    return this.requireOpen().statements.counterValue.get(OUTBOX_DROPPED_COUNTER) ?? 0;
  }

  /** Returns the number of jobs in each status, with 0 for a status that has none. */
  countJobsByStatus(): Record<JobStatus, number> {
    const counts: Record<JobStatus, number> = { pending: 0, running: 0, done: 0, failed: 0 };
    for (const row of this.requireOpen().statements.countJobsByStatus.all()) counts[row.status] = row.count;
    return counts;
  }

  /** Stores one telemetry record. A CHECK constraint rejects a `payload` that is not valid JSON. */
  insertTelemetry(createdAt: Date, payload: string): void {
    this.requireOpen().statements.insertTelemetry.run(createdAt.toISOString(), payload);
  }

  /** Deletes telemetry rows created before `olderThan`. Returns the number deleted. */
  pruneTelemetry(olderThan: Date): number {
    return this.requireOpen().statements.pruneTelemetry.run(olderThan.toISOString()).changes;
  }

  /**
   * Copies committed WAL pages into the database file without waiting for readers
   * (PASSIVE). Run when idle, so outside readers cannot make the WAL grow without bound.
   */
  checkpoint(): void {
    const outcome = this.requireOpen().statements.checkpointPassive.get();
    this.logger.debug({ ...outcome }, 'WAL checkpoint');
  }

  /** Runs a write transaction with synchronous=FULL, then reports the outbox rows it dropped. */
  private commit<T>(state: OpenState, transaction: () => T): T {
    this.droppedInTransaction = 0;
    const result = withSynchronousFull(state.db, transaction);
    const dropped = this.droppedInTransaction;
    this.droppedInTransaction = 0;
    if (dropped > 0) this.dropWarnings.record(dropped, this.outboxDroppedTotal());
    return result;
  }

  /** Deletes the oldest outbox rows beyond the bound, inside the caller's transaction. */
  private enforceOutboxBound(statements: Statements): void {
    const maxRows = this.outboxMaxMessages;
    if (maxRows === null || (statements.outboxIdSpan.get() ?? 0) <= maxRows) return;
    // The span overcounts when rows in the middle were deleted, so the exact count decides.
    if ((statements.countOutbox.get() ?? 0) <= maxRows) return;
    this.droppedInTransaction = dropOldestOutboxRows(statements, maxRows);
  }

  private requireOpen(): OpenState {
    if (this.state === null) throw new Error(`store ${this.file} is not open; call open() first`);
    return this.state;
  }

  private enqueueInTransaction(
    statements: Statements,
    input: NewInput,
    jobs: NewJob[],
    rejected: RejectedRecord[],
    publications: OutboxMessage[],
    delivery: RequestDelivery | null,
  ): EnqueueResult {
    const createdAt = this.clock().toISOString();
    const existingId = statements.inputIdByKey.get(input.inputKey) ?? findRedelivery(statements, delivery);
    if (existingId !== undefined) {
      if (delivery !== null) recordDelivery(statements, delivery, existingId, createdAt);
      return { inputId: existingId, inserted: false, jobIds: statements.jobIdsOfInput.all(existingId) };
    }

    const inputId = Number(
      statements.insertInput.run(inputParameters(input, createdAt)).lastInsertRowid,
    );

    const jobIds = jobs.map((job) => Number(statements.insertJob.run(jobParameters(inputId, job, createdAt)).lastInsertRowid));
    for (const record of rejected) statements.insertRejection.run(rejectionParameters(inputId, record, createdAt));
    insertPublications(statements, publications, createdAt);
    if (delivery !== null) recordDelivery(statements, delivery, inputId, createdAt);
    return { inputId, inserted: true, jobIds };
  }

  private beginInTransaction(statements: Statements, input: NewInput): BeginInputResult {
    const existingId = statements.inputIdByKey.get(input.inputKey);
    if (existingId !== undefined) {
      return {
        inputId: existingId,
        inserted: false,
        complete: statements.inputComplete.get(existingId) === 1,
        lastRecordIndex: statements.lastStoredRecordIndex.get(existingId, existingId) ?? null,
      };
    }

    const inputId = Number(
      statements.insertIncompleteInput.run(inputParameters(input, this.clock().toISOString())).lastInsertRowid,
    );
    return { inputId, inserted: true, complete: false, lastRecordIndex: null };
  }

  private appendInTransaction(
    statements: Statements,
    inputId: number,
    jobs: NewJob[],
    rejected: RejectedRecord[],
    publications: OutboxMessage[],
  ): number[] {
    if (statements.inputComplete.get(inputId) !== 0) throw new Error(`cannot add records to input ${inputId}: input not found or already complete`);

    const createdAt = this.clock().toISOString();
    const jobIds: number[] = [];
    for (const job of jobs) {
      const outcome = statements.insertJobIfNew.run(jobParameters(inputId, job, createdAt));
      if (outcome.changes > 0) jobIds.push(Number(outcome.lastInsertRowid));
    }

    for (const record of rejected) statements.insertRejectionIfNew.run(rejectionParameters(inputId, record, createdAt));
    insertPublications(statements, publications, createdAt);
    return jobIds;
  }

  private claimInTransaction(statements: Statements, limit: number): JobRow[] {
    const startedAt = this.clock().toISOString();
    const ids = statements.pendingJobIds.all(startedAt, limit);
    for (const id of ids) statements.claimJob.run(startedAt, id);
    return ids.map((id) => readJob(statements, id));
  }

  private completeInTransaction(statements: Statements, jobId: number, result: JobResult, publications: OutboxMessage[]): void {
    const finishedAt = this.clock().toISOString();
    if (statements.markJobDone.run(finishedAt, jobId).changes === 0) {
      throw new JobStateError(jobId, statements.jobStatus.get(jobId) ?? null, 'complete');
    }

    statements.insertResult.run({
      job_id: jobId,
      model_id: result.modelId,
      prediction: JSON.stringify(result.prediction),
      cached: result.cached ? 1 : 0,
      latency_ms: result.latencyMs,
      queue_wait_ms: result.queueWaitMs,
      created_at: finishedAt,
    });
    insertPublications(statements, publications, finishedAt);
  }

  private failInTransaction(statements: Statements, jobId: number, code: string, message: string, publications: OutboxMessage[]): void {
    const finishedAt = this.clock().toISOString();
    const changes = statements.markJobFailed.run({ id: jobId, code, message, finished_at: finishedAt }).changes;
    if (changes === 0) throw new JobStateError(jobId, statements.jobStatus.get(jobId) ?? null, 'fail');
    insertPublications(statements, publications, finishedAt);
  }

  private finishInTransaction(statements: Statements, inputId: number, publications: OutboxMessage[]): boolean {
    const finishedAt = this.clock().toISOString();
    if (statements.finishInput.run(finishedAt, inputId).changes === 0) {
      if (statements.inputStatus.get(inputId) === undefined) throw new Error(`cannot finish input ${inputId}: input not found`);
      return false;
    }
    insertPublications(statements, publications, finishedAt);
    return true;
  }
}

/** Bound parameters of an `inputs` row. */
function inputParameters(input: NewInput, createdAt: string) {
  return {
    source: input.source,
    input_key: input.inputKey,
    request_id: input.requestId,
    origin: input.origin,
    reply_topic: input.reply?.responseTopic ?? null,
    correlation_data: input.reply?.correlationData ?? null,
    created_at: createdAt,
  };
}

/** Bound parameters of a `jobs` row, ORF columns included. */
function jobParameters(inputId: number, job: NewJob, createdAt: string) {
  return {
    input_id: inputId,
    record_id: job.recordId,
    record_index: job.recordIndex,
    description: job.description,
    residues: job.sequence.residues,
    sequence_hash: job.sequence.sequenceHash,
    length: job.sequence.residues.length,
    changes: JSON.stringify(job.sequence.changes),
    created_at: createdAt,
    ...orfColumns(job),
    options: job.options ? JSON.stringify(job.options) : null,
  };
}

/** Bound parameters of a `rejections` row. */
function rejectionParameters(inputId: number, record: RejectedRecord, createdAt: string) {
  return {
    input_id: inputId,
    record_id: record.recordId,
    record_index: record.recordIndex,
    code: record.code,
    message: record.message,
    created_at: createdAt,
  };
}

function insertPublications(statements: Statements, publications: OutboxMessage[], createdAt: string): void {
  for (const message of publications) {
    statements.insertOutbox.run({
      topic: message.topic,
      payload: message.payload,
      qos: message.qos,
      retain: message.retain ? 1 : 0,
      correlation_data: message.correlationData ?? null,
      created_at: createdAt,
    });
  }
}

/** Returns the input stored under the delivery's packet id and hash within its window, if any. */
function findRedelivery(statements: Statements, delivery: RequestDelivery | null): number | undefined {
  if (delivery === null || delivery.redeliverySince === null) return undefined;
  return statements.redeliveredInput.get(delivery.packetId, delivery.payloadHash, delivery.redeliverySince.toISOString());
}

function recordDelivery(statements: Statements, delivery: RequestDelivery, inputId: number, createdAt: string): void {
  statements.upsertDelivery.run({ packet_id: delivery.packetId, payload_hash: delivery.payloadHash, input_id: inputId, created_at: createdAt });
}

/** Deletes the outbox rows beyond the newest `maxRows` and counts them. Call inside a transaction. */
function dropOldestOutboxRows(statements: Statements, maxRows: number): number {
  const dropped = statements.trimOutbox.run(maxRows).changes;
  if (dropped > 0) statements.addToCounter.run(OUTBOX_DROPPED_COUNTER, dropped);
  return dropped;
}

function readJob(statements: Statements, id: number): JobRow {
  const record = statements.jobWithInput.get(id);
  if (record === undefined) throw new Error(`job ${id} not found after it was claimed`);
  return toJobRow(record);
}

function checkCount(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative integer, got ${value}`);
}
