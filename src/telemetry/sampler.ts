import type { Logger } from '../log';
import type { TelemetryCounters } from './metrics';
import { PowerMeter, type PowerEstimate, type PowerReading } from './power';
import { TELEMETRY_SCHEMA_VERSION, type TelemetryRecord } from './record';
import { SystemSampler, type SystemSample } from './system';

/** The part of the store the sampler uses. */
export interface TelemetryStore {
  insertTelemetry(createdAt: Date, payload: string): void;
  /** Deletes rows older than `olderThan` and returns how many. */
  pruneTelemetry(olderThan: Date): number;
}

export interface TelemetryReaders {
  system: { sample(): Promise<SystemSample> };
  power: { read(cpuLoad: number | null): Promise<PowerReading> };
}

export interface TelemetrySamplerOptions {
  intervalMs: number;
  deviceId: string;
  modelId: string;
  topic: string;
  counters: () => TelemetryCounters;
  store: TelemetryStore;
  retentionHours: number;
  /** Sends one record. The caller publishes it at QoS 0, not retained. */
  publish: (topic: string, payload: string) => void;
  logger: Logger;
  clock?: () => Date;
  /** Load model for the power estimate when no sensor is found. Null or absent disables the estimate. */
  power?: PowerEstimate | null;
  /** Replaces the default system and power readers (which read /sys, /run and vcgencmd). */
  readers?: TelemetryReaders;
}

/**
 * Builds a telemetry record every interval, stores it, publishes it and prunes rows older than
 * the retention. A failed step is logged and the next interval runs as usual.
 */
export class TelemetrySampler {
  private readonly options: TelemetrySamplerOptions;
  private readonly logger: Logger;
  private readonly clock: () => Date;
  private readers: TelemetryReaders | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private inFlight: Promise<void> | null = null;
  private startedAt: Date | null = null;
  private previous: { time: Date; done: number; residues: number } | null = null;

  constructor(options: TelemetrySamplerOptions) {
    this.options = options;
    this.logger = options.logger.child({ component: 'telemetry' });
    this.clock = options.clock ?? (() => new Date());
  }

  /** Starts the periodic sampling. The first record comes after one interval. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.startedAt ??= this.clock();
    this.previous ??= { time: this.startedAt, ...this.totals() };
    this.schedule();
  }

  /** Stops the timer and waits for a sample in progress. Safe to call twice. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.inFlight;
  }

  /**
   * Builds one record from the counters and readers, without storing or publishing it.
   * Throughput and energy cover the time since the previous record, so each call starts a new interval.
   */
  async sampleNow(): Promise<TelemetryRecord> {
    const now = this.clock();
    this.startedAt ??= now;
    const readers = this.getReaders();
    const counters = this.options.counters();
    const system = await readers.system.sample();
    const power = await readers.power.read(system.cpuLoad);

    const previous = this.previous ?? { time: this.startedAt, done: 0, residues: 0 };
    this.previous = { time: now, done: counters.done, residues: counters.residues };
    const elapsedSeconds = (now.getTime() - previous.time.getTime()) / 1000;
    const sequences = counters.done - previous.done;
    const residues = counters.residues - previous.residues;

    return {
      schemaVersion: TELEMETRY_SCHEMA_VERSION,
      time: now.toISOString(),
      clockSynced: system.clockSynced,
      deviceId: this.options.deviceId,
      uptimeSeconds: Math.max(0, (now.getTime() - this.startedAt.getTime()) / 1000),
      modelId: this.options.modelId,
      counts: {
        received: counters.received,
        done: counters.done,
        failed: counters.failed,
        rejected: counters.rejected,
        cacheHits: counters.cacheHits,
      },
      throughput: {
        sequencesPerSecond: elapsedSeconds > 0 ? sequences / elapsedSeconds : 0,
        residuesPerSecond: elapsedSeconds > 0 ? residues / elapsedSeconds : 0,
      },
      latencyMs: counters.latencyMs,
      queue: { pendingJobs: counters.pendingJobs, outboxDepth: counters.outboxDepth, outboxDropped: counters.outboxDropped ?? 0 },
      cache: {
        resultHitRatio: counters.done > 0 ? counters.cacheHits / counters.done : null,
        prefixHitRatio: counters.prefixCacheHitRatio ?? null,
        memoryHits: counters.memoryCache?.hits ?? 0,
        memoryMisses: counters.memoryCache?.misses ?? 0,
        memoryBytes: counters.memoryCache?.bytes ?? 0,
        memoryEntries: counters.memoryCache?.entries ?? 0,
        prefixEntries: counters.prefixCache?.entries ?? 0,
        prefixBytes: counters.prefixCache?.bytes ?? 0,
        prefixEvictions: counters.prefixCache?.evictions ?? 0,
      },
      cpu: { load: system.cpuLoad, loadAveragePerCore: system.loadAveragePerCore },
      temperatureCelsius: system.temperatureCelsius,
      throttled: system.throttled,
      memory: system.memory,
      power: { watts: power.watts, source: power.source, estimated: power.estimated },
      energyPerSequenceJoules: power.watts !== null && sequences > 0 && elapsedSeconds > 0 ? (power.watts * elapsedSeconds) / sequences : null,
    };
  }

  private getReaders(): TelemetryReaders {
    this.readers ??= this.options.readers ?? {
      system: new SystemSampler(),
      power: new PowerMeter({ estimate: this.options.power ?? null }),
    };
    return this.readers;
  }

  private totals(): { done: number; residues: number } {
    try {
      const counters = this.options.counters();
      return { done: counters.done, residues: counters.residues };
    } catch (err) {
      this.logger.warn({ err }, 'failed to read the counters');
      return { done: 0, residues: 0 };
    }
  }

  private schedule(): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.inFlight = this.tick().finally(() => {
        this.inFlight = null;
        this.schedule();
      });
    }, this.options.intervalMs);
  }

  /** Samples, stores, publishes and prunes. Each failure is logged, and the next step still runs. */
  private async tick(): Promise<void> {
    let record: TelemetryRecord;
    try {
      record = await this.sampleNow();
    } catch (err) {
      this.logger.error({ err }, 'telemetry sample failed');
      return;
    }

    const payload = JSON.stringify(record);
    try {
      this.options.store.insertTelemetry(new Date(record.time), payload);
    } catch (err) {
      this.logger.error({ err }, 'failed to store the telemetry record');
    }

    try {
      this.options.publish(this.options.topic, payload);
    } catch (err) {
      this.logger.warn({ err, topic: this.options.topic }, 'failed to publish the telemetry record');
    }

    try {
      const olderThan = new Date(new Date(record.time).getTime() - this.options.retentionHours * 3_600_000);
      const pruned = this.options.store.pruneTelemetry(olderThan);
      if (pruned > 0) this.logger.debug({ pruned }, 'old telemetry rows pruned');
    } catch (err) {
      this.logger.error({ err }, 'failed to prune telemetry rows');
    }
  }
}
