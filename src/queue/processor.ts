import type { Logger } from '../log';
import { predictOptionsKey, type Prediction, type PredictOptions } from '../contracts/prediction';
import type { InputRow, JobRow, JobResult, OutboxMessage } from '../contracts/store';
import type { Topics } from '../contracts/topics';
import type { RejectedRecord } from '../contracts/jobs';
import type { JobOutcome } from '../contracts/store';
import { resultCacheKey, type ResultCache } from '../cache/result-cache';
import { errorMessage, predictionMessage, responseMessage } from './messages';

/** The model as the processor uses it. */
export interface Predictor {
  readonly modelId: string;
  /** Predicts each sequence with `options[i]` (none when absent). */
  predict(residues: string[], options?: ReadonlyArray<PredictOptions | undefined>): Promise<Prediction[]>;
}

/** The part of the store the processor needs. */
export interface ProcessorStore {
  requeueRunningJobs(): number;
  claimPendingJobs(limit: number): JobRow[];
  releaseJobs(jobIds: number[]): void;
  retryJobs(jobIds: number[], retryAfter: Date): void;
  findCachedPrediction(sequenceHash: string, modelId: string, options?: PredictOptions): Prediction | null;
  completeJob(jobId: number, result: JobResult, publications: OutboxMessage[]): void;
  completeJobs(items: Array<{ jobId: number; result: JobResult; publications: OutboxMessage[] }>): void;
  failJob(jobId: number, code: string, message: string, publications: OutboxMessage[]): void;
  getInput(inputId: number): InputRow | null;
  isInputComplete(inputId: number): boolean;
  listCompleteOpenInputs(source?: InputRow['source']): InputRow[];
  inputOutcomes(inputId: number): JobOutcome[];
  inputRejections(inputId: number): RejectedRecord[];
  finishInput(inputId: number, publications: OutboxMessage[]): boolean;
}

/** Counters the processor reports to telemetry. */
export interface ProcessorMetrics {
  recordDone(sample: { queueWaitMs: number; inferenceMs: number; totalMs: number; residues: number; cached: boolean }): void;
  recordFailed(): void;
}

/** Timing of a batch of results: cache hits or model results, and when the batch started. */
interface ResultTiming {
  cached: boolean;
  /** Model time per job in ms, or 0 for cache hits. */
  inferenceMs: number;
  startedAt: Date;
}

/** A result ready to be stored, with the latencies it reports. */
interface ResultRow {
  jobId: number;
  result: JobResult;
  publications: OutboxMessage[];
  queueWaitMs: number;
  latencyMs: number;
}

export interface JobProcessorOptions {
  store: ProcessorStore;
  predictor: Predictor;
  topics: Topics;
  metrics: ProcessorMetrics;
  logger: Logger;
  /** Most jobs claimed and sent to the model at once. */
  batchSize: number;
  /**
   * Maximum wait for more jobs when a claim returns fewer than `batchSize`, in ms, so that
   * requests arriving close together share one model run. Absent or 0, a claim runs at once.
   */
  batchWaitMs?: number;
  /** Called after jobs were committed, so publishers and the inbox can act. */
  onCommitted: () => void;
  /** Called when every job of an inbox input is finished. */
  onInboxInputComplete: () => void;
  /**
   * Claims of a job whose inference failed before it fails with QUARANTINED. A failed attempt
   * below this goes back to pending. A claim released by a graceful stop counts too.
   */
  maxAttempts: number;
  /**
   * Wait before the second attempt of a failed job, in ms. Each further attempt waits twice as
   * long as the one before, up to `retryBackoffMaxMs`. Absent or 0, a failed job is retried at once.
   */
  retryBackoffMs?: number;
  /** Maximum wait between two attempts of a job, in ms. Absent: no limit. */
  retryBackoffMaxMs?: number;
  /** Called each time a claim finds no pending job, before the loop waits. */
  onIdle?: () => void;
  /** Fallback poll period when no notification arrives, in ms. */
  idlePollMs?: number;
  clock?: () => Date;
  /**
   * Memory tier in front of the store's result lookup. Absent or disabled (maxBytes 0), every
   * lookup goes to the store.
   */
  resultCache?: ResultCache;
}

/**
 * Takes pending jobs from the store, serves them from the result cache or the model, and
 * commits each result together with its outgoing messages in one transaction.
 */
export class JobProcessor {
  private running = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  /** Timers that wake the loop when a job's retry wait has passed. */
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private readonly logger: Logger;
  private readonly clock: () => Date;

  constructor(private readonly options: JobProcessorOptions) {
    this.logger = options.logger.child({ component: 'processor' });
    this.clock = options.clock ?? (() => new Date());
  }

  /** Requeues jobs a crash left running, replies to inputs left complete, and starts the loop. */
  start(): void {
    if (this.running) return;
    const requeued = this.options.store.requeueRunningJobs();
    if (requeued > 0) this.logger.info({ requeued }, 'requeued jobs left running by the previous process');
    this.finishCompleteMqttInputs();

    this.running = true;
    this.loop = this.runLoop();
  }

  /** Wakes the loop after new jobs were committed. */
  notify(): void {
    this.wake?.();
  }

  /** Stops taking jobs and waits for the batch in progress; claimed jobs not yet run go back to pending. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    for (const timer of this.retryTimers) clearTimeout(timer);
    this.retryTimers.clear();
    this.notify();
    await this.loop;
    this.loop = null;
  }

  private async runLoop(): Promise<void> {
    while (this.running) {
      const jobs = this.claim(this.options.batchSize);
      if (jobs.length === 0) {
        this.options.onIdle?.();
        await this.waitForWork(this.options.idlePollMs ?? 1000);
        continue;
      }
      await this.processBatch(await this.fillBatch(jobs));
    }
  }

  private claim(limit: number): JobRow[] {
    try {
      return this.options.store.claimPendingJobs(limit);
    } catch (err) {
      this.logger.error({ err }, 'claiming jobs failed');
      return [];
    }
  }

  /** Claims more jobs for a batch that is not full until it is, or until batchWaitMs has passed. */
  private async fillBatch(jobs: JobRow[]): Promise<JobRow[]> {
    const deadline = performance.now() + (this.options.batchWaitMs ?? 0);
    let batch = jobs;
    while (this.running && batch.length < this.options.batchSize) {
      const leftMs = deadline - performance.now();
      if (leftMs <= 0) break;
      await this.waitForWork(leftMs);
      batch = batch.concat(this.claim(this.options.batchSize - batch.length));
    }
    return batch;
  }

  private waitForWork(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = null;
        done();
      };
    });
  }

  private async processBatch(jobs: JobRow[]): Promise<void> {
    const { store } = this.options;
    const startedAt = this.clock();
    const misses: JobRow[] = [];
    const hits: Array<{ job: JobRow; prediction: Prediction }> = [];

    for (const job of jobs) {
      const cached = this.findCachedPrediction(job);
      if (cached) hits.push({ job, prediction: cached });
      else misses.push(job);
    }
    if (hits.length > 0) this.commitResults(hits, { cached: true, inferenceMs: 0, startedAt });

    if (misses.length > 0) {
      if (!this.running) {
        // A stop arrived between claim and inference: the jobs go back and run after a restart.
        store.releaseJobs(misses.map((job) => job.id));
        return;
      }
      await this.runModel(misses, startedAt);
    }
    this.afterCommit(jobs);
  }

  /** Looks the job up in the memory cache, then in the store, and copies a store hit into memory. */
  private findCachedPrediction(job: JobRow): Prediction | null {
    const memory = this.memoryCache();
    const key = resultCacheKey(this.options.predictor.modelId, job.sequenceHash, predictOptionsKey(job.options));
    const fromMemory = memory?.get(key);
    if (fromMemory) return fromMemory;

    const fromStore = this.options.store.findCachedPrediction(job.sequenceHash, this.options.predictor.modelId, job.options);
    if (fromStore) memory?.set(key, fromStore);
    return fromStore;
  }

  private memoryCache(): ResultCache | null {
    const cache = this.options.resultCache;
    return cache?.enabled ? cache : null;
  }

  /**
   * Runs the model on the jobs and commits their results. When a batch of several jobs fails,
   * its jobs run again one at a time in the same claim, so only a job that fails on its own
   * counts a failed attempt and its batch-mates finish.
   */
  private async runModel(jobs: JobRow[], startedAt: Date): Promise<void> {
    const inferenceStart = performance.now();
    let predictions: Prediction[];
    try {
      predictions = await this.options.predictor.predict(
        jobs.map((job) => job.residues),
        jobs.map((job) => job.options),
      );
    } catch (err) {
      if (jobs.length === 1) this.handleInferenceFailure(jobs[0], err);
      else await this.runOneAtATime(jobs, startedAt, err);
      return;
    }

    const inferenceMs = (performance.now() - inferenceStart) / jobs.length;
    const memory = this.memoryCache();
    const committed = this.commitResults(
      jobs.map((job, index) => ({ job, prediction: predictions[index] })),
      { cached: false, inferenceMs, startedAt },
    );
    committed.forEach(({ job, prediction }) => {
      memory?.set(resultCacheKey(this.options.predictor.modelId, job.sequenceHash, predictOptionsKey(job.options)), prediction);
    });
  }

  /** Runs each job of a failed batch alone. A stop in between sends the jobs not yet run back to pending. */
  private async runOneAtATime(jobs: JobRow[], startedAt: Date, batchError: unknown): Promise<void> {
    this.logger.warn({ err: batchError, jobIds: jobs.map((job) => job.id) }, 'batch inference failed, running its jobs one at a time');
    for (const [index, job] of jobs.entries()) {
      if (!this.running) {
        this.options.store.releaseJobs(jobs.slice(index).map((rest) => rest.id));
        return;
      }
      await this.runModel([job], startedAt);
    }
  }

  /**
   * Sends a job whose inference failed on its own back to pending, to be claimed after its
   * backoff (the daemon restarts a crashed worker before the next batch), or fails it with
   * QUARANTINED once it reached maxAttempts claims.
   */
  private handleInferenceFailure(job: JobRow, err: unknown): void {
    const { maxAttempts } = this.options;
    if (job.attempts >= maxAttempts) {
      this.logger.error({ err, jobId: job.id, attempts: job.attempts, maxAttempts }, 'inference failed in every attempt, quarantining the job');
      const reason = err instanceof Error ? err.message : String(err);
      this.commitFailure(job, 'QUARANTINED', `inference failed in ${job.attempts} of ${maxAttempts} allowed attempts, last error: ${reason}`);
      return;
    }

    const retryDelayMs = retryBackoffMs(job.attempts, this.options.retryBackoffMs ?? 0, this.options.retryBackoffMaxMs ?? Number.POSITIVE_INFINITY);
    this.logger.error({ err, jobId: job.id, attempts: job.attempts, maxAttempts, retryDelayMs }, 'inference failed, retrying the job later');
    try {
      this.options.store.retryJobs([job.id], new Date(this.clock().getTime() + retryDelayMs));
    } catch (storeErr) {
      this.logger.error({ err: storeErr, jobId: job.id }, 'sending the job back for a retry failed');
      return;
    }
    if (retryDelayMs > 0) this.wakeAfter(retryDelayMs);
  }

  /** Wakes the loop after `delayMs`, when a job waiting for its retry becomes due. */
  private wakeAfter(delayMs: number): void {
    const timer = setTimeout(() => {
      this.retryTimers.delete(timer);
      this.notify();
    }, delayMs);
    timer.unref();
    this.retryTimers.add(timer);
  }

  /**
   * Stores the results with their publications in one transaction, which costs one fsync for
   * the batch. When that transaction fails, each result is stored on its own, so one job that
   * cannot be stored does not hold back the others. Returns the results that were stored.
   */
  private commitResults(items: Array<{ job: JobRow; prediction: Prediction }>, timing: ResultTiming): Array<{ job: JobRow; prediction: Prediction }> {
    const now = this.clock();
    const rows = items.map(({ job, prediction }) => this.resultRow(job, prediction, timing, now));

    if (rows.length > 1) {
      try {
        this.options.store.completeJobs(rows.map(({ jobId, result, publications }) => ({ jobId, result, publications })));
        rows.forEach((row, index) => this.recordDone(items[index].job, row, timing));
        return items;
      } catch (err) {
        this.logger.warn({ err, jobIds: rows.map((row) => row.jobId) }, 'storing the batch of results failed, storing them one by one');
      }
    }

    return items.filter(({ job }, index) => {
      const row = rows[index];
      try {
        this.options.store.completeJob(row.jobId, row.result, row.publications);
      } catch (err) {
        this.logger.error({ err, jobId: job.id }, 'storing the result failed');
        return false;
      }
      this.recordDone(job, row, timing);
      return true;
    });
  }

  private resultRow(job: JobRow, prediction: Prediction, timing: ResultTiming, now: Date): ResultRow {
    const queueWaitMs = Math.max(0, timing.startedAt.getTime() - Date.parse(job.createdAt));
    const latencyMs = Math.max(0, now.getTime() - timing.startedAt.getTime());
    const publication = predictionMessage(this.options.topics, job, prediction, { cached: timing.cached, latencyMs, createdAt: now });
    return {
      jobId: job.id,
      result: { prediction, modelId: this.options.predictor.modelId, cached: timing.cached, latencyMs, queueWaitMs },
      publications: [publication],
      queueWaitMs,
      latencyMs,
    };
  }

  private recordDone(job: JobRow, row: ResultRow, timing: ResultTiming): void {
    this.options.metrics.recordDone({
      queueWaitMs: row.queueWaitMs,
      inferenceMs: timing.inferenceMs,
      totalMs: row.queueWaitMs + row.latencyMs,
      residues: job.residues.length,
      cached: timing.cached,
    });
    this.logger.debug({ jobId: job.id, recordId: job.recordId, cached: timing.cached, latencyMs: row.latencyMs }, 'job done');
  }

  private commitFailure(job: JobRow, code: string, message: string): void {
    const publication = errorMessage(
      this.options.topics,
      job,
      [{ recordId: job.recordId, recordIndex: job.recordIndex, code, message }],
      this.clock(),
    );
    try {
      this.options.store.failJob(job.id, code, message, [publication]);
    } catch (err) {
      this.logger.error({ err, jobId: job.id }, 'storing the job failure failed');
      return;
    }
    this.options.metrics.recordFailed();
  }

  /** Replies to MQTT inputs whose jobs are all finished and notifies the inbox of its finished inputs. */
  private afterCommit(jobs: JobRow[]): void {
    const inputIds = new Set(jobs.map((job) => job.inputId));
    let inboxInputDone = false;

    for (const inputId of inputIds) {
      if (!this.options.store.isInputComplete(inputId)) continue;
      const input = this.options.store.getInput(inputId);
      if (input?.source === 'mqtt') this.finishMqttInput(input);
      if (input?.source === 'inbox') inboxInputDone = true;
    }

    this.options.onCommitted();
    if (inboxInputDone) this.options.onInboxInputComplete();
  }

  private finishCompleteMqttInputs(): void {
    for (const input of this.options.store.listCompleteOpenInputs('mqtt')) this.finishMqttInput(input);
  }

  private finishMqttInput(input: InputRow): void {
    const { store, topics } = this.options;
    try {
      const reply = responseMessage(input, store.inputOutcomes(input.id), store.inputRejections(input.id), topics.response);
      store.finishInput(input.id, [reply]);
    } catch (err) {
      this.logger.error({ err, inputId: input.id }, 'replying to the request failed');
    }
  }
}

/**
 * Returns the wait before the next attempt of a job that failed in its `attempts`-th claim:
 * `baseMs` after the first, doubling after each further one, at most `maxMs`.
 */
export function retryBackoffMs(attempts: number, baseMs: number, maxMs: number): number {
  if (baseMs <= 0) return 0;
  return Math.min(maxMs, baseMs * 2 ** Math.max(0, attempts - 1));
}
