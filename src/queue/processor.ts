import type { Logger } from '../log';
import type { Prediction } from '../contracts/prediction';
import type { InputRow, JobRow, JobResult, OutboxMessage } from '../contracts/store';
import type { Topics } from '../contracts/topics';
import type { RejectedRecord } from '../contracts/jobs';
import type { JobOutcome } from '../contracts/store';
import { resultCacheKey, type ResultCache } from '../cache/result-cache';
import { errorMessage, predictionMessage, responseMessage } from './messages';

// No request option changes the model output today, so every cache key uses the empty options
// key. An option that does must be serialized here in a stable order.
const OPTIONS_KEY = '';

/** The model as the processor uses it. */
export interface Predictor {
  readonly modelId: string;
  predict(residues: string[]): Promise<Prediction[]>;
}

/** The part of the store the processor needs. */
export interface ProcessorStore {
  requeueRunningJobs(): number;
  claimPendingJobs(limit: number): JobRow[];
  releaseJobs(jobIds: number[]): void;
  findCachedPrediction(sequenceHash: string, modelId: string): Prediction | null;
  completeJob(jobId: number, result: JobResult, publications: OutboxMessage[]): void;
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

export interface JobProcessorOptions {
  store: ProcessorStore;
  predictor: Predictor;
  topics: Topics;
  metrics: ProcessorMetrics;
  logger: Logger;
  /** Most jobs claimed and sent to the model at once. */
  batchSize: number;
  /** Called after jobs were committed, so publishers and the inbox can act. */
  onCommitted: () => void;
  /** Called when every job of an inbox input is finished. */
  onInboxInputComplete: () => void;
  /**
   * Claims of a job whose inference failed before it fails with QUARANTINED. A failed attempt
   * below this goes back to pending. A claim released by a graceful stop counts too.
   */
  maxAttempts: number;
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
    this.notify();
    await this.loop;
    this.loop = null;
  }

  private async runLoop(): Promise<void> {
    while (this.running) {
      let jobs: JobRow[] = [];
      try {
        jobs = this.options.store.claimPendingJobs(this.options.batchSize);
      } catch (err) {
        this.logger.error({ err }, 'claiming jobs failed');
      }

      if (jobs.length === 0) {
        this.options.onIdle?.();
        await this.waitForWork();
        continue;
      }
      await this.processBatch(jobs);
    }
  }

  private waitForWork(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, this.options.idlePollMs ?? 1000);
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

    for (const job of jobs) {
      const cached = this.findCachedPrediction(job);
      if (cached) this.commitResult(job, cached, { cached: true, inferenceMs: 0, startedAt });
      else misses.push(job);
    }

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
    const key = resultCacheKey(this.options.predictor.modelId, job.sequenceHash, OPTIONS_KEY);
    const fromMemory = memory?.get(key);
    if (fromMemory) return fromMemory;

    const fromStore = this.options.store.findCachedPrediction(job.sequenceHash, this.options.predictor.modelId);
    if (fromStore) memory?.set(key, fromStore);
    return fromStore;
  }

  private memoryCache(): ResultCache | null {
    const cache = this.options.resultCache;
    return cache?.enabled ? cache : null;
  }

  private async runModel(jobs: JobRow[], startedAt: Date): Promise<void> {
    const inferenceStart = performance.now();
    let predictions: Prediction[];
    try {
      predictions = await this.options.predictor.predict(jobs.map((job) => job.residues));
    } catch (err) {
      this.handleInferenceFailure(jobs, err);
      return;
    }

    const inferenceMs = (performance.now() - inferenceStart) / jobs.length;
    const memory = this.memoryCache();
    jobs.forEach((job, index) => {
      const committed = this.commitResult(job, predictions[index], { cached: false, inferenceMs, startedAt });
      if (committed) memory?.set(resultCacheKey(this.options.predictor.modelId, job.sequenceHash, OPTIONS_KEY), predictions[index]);
    });
  }

  /**
   * Sends each job back to pending for another attempt (the daemon restarts a crashed worker
   * before the next batch), or fails it with QUARANTINED once it reached maxAttempts claims.
   */
  private handleInferenceFailure(jobs: JobRow[], err: unknown): void {
    const { maxAttempts } = this.options;
    const retry = jobs.filter((job) => job.attempts < maxAttempts);
    const quarantine = jobs.filter((job) => job.attempts >= maxAttempts);
    this.logger.error(
      { err, retryJobIds: retry.map((job) => job.id), quarantinedJobIds: quarantine.map((job) => job.id), maxAttempts },
      'inference failed',
    );

    // NOTE: every job of a failed batch counts the attempt, including jobs that did not cause
    // the failure, and the retry runs at once without a backoff.
    if (retry.length > 0) {
      try {
        this.options.store.releaseJobs(retry.map((job) => job.id));
      } catch (err) {
        this.logger.error({ err, jobIds: retry.map((job) => job.id) }, 'releasing jobs for a retry failed');
      }
    }

    const reason = err instanceof Error ? err.message : String(err);
    for (const job of quarantine) {
      this.commitFailure(job, 'QUARANTINED', `inference failed in ${job.attempts} of ${maxAttempts} allowed attempts, last error: ${reason}`);
    }
  }

  /** Stores the result with its publication and returns false when the transaction failed. */
  private commitResult(job: JobRow, prediction: Prediction, timing: { cached: boolean; inferenceMs: number; startedAt: Date }): boolean {
    const now = this.clock();
    const queueWaitMs = Math.max(0, timing.startedAt.getTime() - Date.parse(job.createdAt));
    const latencyMs = Math.max(0, now.getTime() - timing.startedAt.getTime());
    const publication = predictionMessage(this.options.topics, job, prediction, { cached: timing.cached, latencyMs, createdAt: now });

    try {
      this.options.store.completeJob(
        job.id,
        { prediction, modelId: this.options.predictor.modelId, cached: timing.cached, latencyMs, queueWaitMs },
        [publication],
      );
    } catch (err) {
      this.logger.error({ err, jobId: job.id }, 'storing the result failed');
      return false;
    }

    this.options.metrics.recordDone({
      queueWaitMs,
      inferenceMs: timing.inferenceMs,
      totalMs: queueWaitMs + latencyMs,
      residues: job.residues.length,
      cached: timing.cached,
    });
    this.logger.debug({ jobId: job.id, recordId: job.recordId, cached: timing.cached, latencyMs }, 'job done');
    return true;
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
