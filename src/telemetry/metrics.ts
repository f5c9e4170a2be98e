import { LatencyWindow, type LatencyPercentiles } from './latency';

/** Latency percentiles in ms of the three stages of a job. */
export interface StageLatencies {
  /** From the job's commit to the start of its inference (or its cache lookup). */
  queueWait: LatencyPercentiles;
  /** Model run time, without cache hits. */
  inference: LatencyPercentiles;
  /** From the job's commit to its stored result. */
  total: LatencyPercentiles;
}

/** Counter values the telemetry sampler reads each interval. Counts are totals since the daemon started. */
export interface TelemetryCounters {
  received: number;
  done: number;
  failed: number;
  rejected: number;
  cacheHits: number;
  /** Residues of all done sequences. */
  residues: number;
  latencyMs: StageLatencies;
  pendingJobs: number;
  outboxDepth: number;
  /** Outbox messages dropped unsent at the outbox bound, over the life of the database file. */
  outboxDropped?: number;
  /** Share of prefix (key/value) cache lookups that hit, when the inference engine reports it. */
  prefixCacheHitRatio?: number | null;
  /** Counters of the in-memory result cache, when the daemon has one. */
  memoryCache?: MemoryCacheCounters;
  /** Size of the prefix (key/value) cache, when the daemon has one. */
  prefixCache?: PrefixCacheSize;
}

/** Blocks held by the prefix cache, their estimated bytes, and the blocks evicted since the daemon started. */
export interface PrefixCacheSize {
  entries: number;
  bytes: number;
  evictions: number;
}

/** Counters of the in-memory result cache. Hits and misses are totals, and bytes is an estimate. */
export interface MemoryCacheCounters {
  hits: number;
  misses: number;
  entries: number;
  bytes: number;
}

/** One finished job, as the processor reports it. */
export interface DoneJobMetrics {
  queueWaitMs: number;
  inferenceMs: number;
  totalMs: number;
  residues: number;
  /** True when the result came from the result cache. */
  cached: boolean;
}

/** Counters and latency windows that the processor updates and the sampler reads. */
export class Metrics {
  private received = 0;
  private done = 0;
  private failed = 0;
  private rejected = 0;
  private cacheHits = 0;
  private residues = 0;
  private readonly queueWait: LatencyWindow;
  private readonly inference: LatencyWindow;
  private readonly total: LatencyWindow;

  constructor(windowSize?: number) {
    this.queueWait = new LatencyWindow(windowSize);
    this.inference = new LatencyWindow(windowSize);
    this.total = new LatencyWindow(windowSize);
  }

  /** Counts sequences received (accepted as jobs). */
  recordReceived(count: number): void {
    this.received += count;
  }

  recordDone(job: DoneJobMetrics): void {
    this.done += 1;
    this.residues += job.residues;
    this.queueWait.add(job.queueWaitMs);
    this.total.add(job.totalMs);
    if (job.cached) this.cacheHits += 1;
    else this.inference.add(job.inferenceMs);
  }

  recordFailed(): void {
    this.failed += 1;
  }

  /** Counts records rejected before they became jobs. */
  recordRejected(count: number): void {
    this.rejected += count;
  }

  /** Returns the counters without the queue depths, which come from the store. */
  snapshot(): Omit<TelemetryCounters, 'pendingJobs' | 'outboxDepth' | 'outboxDropped' | 'prefixCacheHitRatio' | 'memoryCache' | 'prefixCache'> {
    return {
      received: this.received,
      done: this.done,
      failed: this.failed,
      rejected: this.rejected,
      cacheHits: this.cacheHits,
      residues: this.residues,
      latencyMs: {
        queueWait: this.queueWait.percentiles(),
        inference: this.inference.percentiles(),
        total: this.total.percentiles(),
      },
    };
  }
}
