import type { StageLatencies } from './metrics';
import type { PowerSource } from './power';
import type { ThrottledFlags } from './system';

/** Version of the telemetry record, bumped on incompatible changes. */
export const TELEMETRY_SCHEMA_VERSION = 1;

/** One telemetry record, as stored in SQLite and published on the telemetry topic. */
export interface TelemetryRecord {
  schemaVersion: number;
  /** ISO 8601 time of the sample. */
  time: string;
  /** True when systemd-timesyncd reports a synchronized clock, null when that is unknown. */
  clockSynced: boolean | null;
  deviceId: string;
  /** Seconds since the sampler started. */
  uptimeSeconds: number;
  modelId: string;
  /** Totals since the daemon started. */
  counts: { received: number; done: number; failed: number; rejected: number; cacheHits: number };
  /** Rates over the interval since the previous record. */
  throughput: { sequencesPerSecond: number; residuesPerSecond: number };
  latencyMs: StageLatencies;
  /** `outboxDropped` counts messages dropped unsent at the outbox bound, over the life of the database file. */
  queue: { pendingJobs: number; outboxDepth: number; outboxDropped: number };
  /**
   * Hit ratios: the result cache (memory and SQLite together) over all done jobs, the prefix
   * cache as the engine reports it. The memory fields are totals of the in-memory tier, zero
   * when it is disabled, and memoryBytes is its estimated size. The prefix fields give the
   * blocks the prefix cache holds, their estimated bytes and the blocks evicted so far.
   */
  cache: {
    resultHitRatio: number | null;
    prefixHitRatio: number | null;
    memoryHits: number;
    memoryMisses: number;
    memoryBytes: number;
    memoryEntries: number;
    prefixEntries: number;
    prefixBytes: number;
    prefixEvictions: number;
  };
  /** Busy share of CPU time over the interval (0 to 1) and the one-minute load average per core. */
  cpu: { load: number; loadAveragePerCore: number };
  temperatureCelsius: number | null;
  throttled: ThrottledFlags | null;
  memory: { rssBytes: number; heapUsedBytes: number; systemFreeBytes: number };
  power: { watts: number | null; source: PowerSource; estimated: boolean };
  /** Device energy over the interval divided by the sequences done in it, or null when either is unknown or zero. */
  energyPerSequenceJoules: number | null;
}
