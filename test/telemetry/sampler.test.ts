import path from 'node:path';
import Database from 'better-sqlite3';
import { createLogger } from '../../src/log';
import { Store } from '../../src/store';
import { Metrics, type TelemetryCounters } from '../../src/telemetry/metrics';
import { PowerMeter, type PowerEstimate } from '../../src/telemetry/power';
import type { TelemetryRecord } from '../../src/telemetry/record';
import { TelemetrySampler, type TelemetryStore } from '../../src/telemetry/sampler';
import { SystemSampler } from '../../src/telemetry/system';
import { FixtureFolder } from './fixtures';

const TOPIC = 'bitnet-edge/test-device/telemetry';

/** A real SQLite telemetry table with the store's telemetry methods. */
class SqliteTelemetry implements TelemetryStore {
  readonly db: Database.Database;

  constructor(file: string) {
    this.db = new Database(file);
    this.db.exec('CREATE TABLE telemetry (id INTEGER PRIMARY KEY, created_at TEXT NOT NULL, payload TEXT NOT NULL)');
  }

  insertTelemetry(createdAt: Date, payload: string): void {
    this.db.prepare('INSERT INTO telemetry (created_at, payload) VALUES (?, ?)').run(createdAt.toISOString(), payload);
  }

  pruneTelemetry(olderThan: Date): number {
    return this.db.prepare('DELETE FROM telemetry WHERE created_at < ?').run(olderThan.toISOString()).changes;
  }

  payloads(): string[] {
    return (this.db.prepare('SELECT payload FROM telemetry ORDER BY id').all() as Array<{ payload: string }>).map((row) => row.payload);
  }
}

describe('TelemetrySampler', () => {
  let fixture: FixtureFolder;
  let store: SqliteTelemetry;
  let metrics: Metrics;
  let published: Array<{ topic: string; payload: string }>;
  let nowMs: number;
  let sampler: TelemetrySampler | null;
  /** CPU time of the single fixture core, which tests advance between samples. */
  let cpu: { busyMs: number; idleMs: number };

  beforeEach(() => {
    fixture = new FixtureFolder();
    store = new SqliteTelemetry(path.join(fixture.root, 'telemetry.db'));
    metrics = new Metrics();
    published = [];
    nowMs = Date.parse('2026-01-01T00:00:00Z');
    sampler = null;
    cpu = { busyMs: 50, idleMs: 50 };
  });

  afterEach(async () => {
    await sampler?.stop();
    store.db.close();
    fixture.remove();
  });

  function counters(): TelemetryCounters {
    return { ...metrics.snapshot(), pendingJobs: 4, outboxDepth: 2 };
  }

  /** A sampler on an empty fixture tree: no sensors, no vcgencmd. */
  function createSampler(estimate: PowerEstimate | null, options: { intervalMs?: number; realClock?: boolean } = {}): TelemetrySampler {
    const sysfsRoot = path.join(fixture.root, 'sys');
    return new TelemetrySampler({
      intervalMs: options.intervalMs ?? 10_000,
      deviceId: 'test-device',
      modelId: 'model-abc',
      topic: TOPIC,
      counters,
      store,
      retentionHours: 1,
      publish: (topic, payload) => published.push({ topic, payload }),
      logger: createLogger('silent'),
      clock: options.realClock ? undefined : () => new Date(nowMs),
      readers: {
        system: new SystemSampler({ sysfsRoot, runRoot: fixture.root, vcgencmdPath: null, cpuTimes: () => [{ model: 't', speed: 0, times: { user: cpu.busyMs, nice: 0, sys: 0, idle: cpu.idleMs, irq: 0 } }] }),
        power: new PowerMeter({ sysfsRoot, vcgencmdPath: null, estimate }),
      },
    });
  }

  test('record has every field', async () => {
    sampler = createSampler({ idleWatts: 2, maxWatts: 6 });
    const record = await sampler.sampleNow();

    const expectedKeys: Array<keyof TelemetryRecord> = [
      'schemaVersion', 'time', 'clockSynced', 'deviceId', 'uptimeSeconds', 'modelId', 'counts', 'throughput',
      'latencyMs', 'queue', 'cache', 'cpu', 'temperatureCelsius', 'throttled', 'memory', 'power', 'energyPerSequenceJoules',
    ];
    expect(Object.keys(record).sort()).toEqual([...expectedKeys].sort());
    expect(record.schemaVersion).toBe(1);
    expect(record.time).toBe('2026-01-01T00:00:00.000Z');
    expect(record.deviceId).toBe('test-device');
    expect(record.modelId).toBe('model-abc');
    expect(Object.keys(record.counts).sort()).toEqual(['cacheHits', 'done', 'failed', 'received', 'rejected']);
    expect(Object.keys(record.latencyMs).sort()).toEqual(['inference', 'queueWait', 'total']);
    expect(record.queue).toEqual({ pendingJobs: 4, outboxDepth: 2, outboxDropped: 0 });
    expect(Object.keys(record.memory).sort()).toEqual(['heapUsedBytes', 'rssBytes', 'systemFreeBytes']);
    expect(record.temperatureCelsius).toBeNull();
    expect(record.throttled).toBeNull();
    expect(record.power).toEqual({ watts: 4, source: 'estimate', estimated: true });
    expect(record.energyPerSequenceJoules).toBeNull();
    expect(record.cache.resultHitRatio).toBeNull();
  });

  test('unavailable power has null watts', async () => {
    sampler = createSampler(null);
    const record = await sampler.sampleNow();
    expect(record.power).toEqual({ watts: null, source: 'unavailable', estimated: false });
    expect(record.energyPerSequenceJoules).toBeNull();
  });

  test('throughput and energy over the interval', async () => {
    sampler = createSampler({ idleWatts: 2, maxWatts: 6 });
    await sampler.sampleNow();

    metrics.recordReceived(5);
    for (let i = 0; i < 5; i += 1) {
      metrics.recordDone({ queueWaitMs: 1, inferenceMs: 20, totalMs: 25, residues: 200, cached: i === 0 });
    }
    nowMs += 10_000;
    cpu = { busyMs: cpu.busyMs + 500, idleMs: cpu.idleMs + 500 };
    const record = await sampler.sampleNow();

    expect(record.uptimeSeconds).toBe(10);
    expect(record.counts).toEqual({ received: 5, done: 5, failed: 0, rejected: 0, cacheHits: 1 });
    expect(record.throughput.sequencesPerSecond).toBeCloseTo(0.5, 9);
    expect(record.throughput.residuesPerSecond).toBeCloseTo(100, 9);
    expect(record.cache.resultHitRatio).toBeCloseTo(0.2, 9);
    expect(record.latencyMs.inference).toEqual({ p50: 20, p90: 20, p99: 20 });
    // 4 W (half load on the 2 to 6 W model) for 10 s over 5 sequences.
    expect(record.energyPerSequenceJoules).toBeCloseTo(8, 9);
  });

  test('interval stores, publishes and prunes', async () => {
    store.insertTelemetry(new Date(Date.now() - 2 * 3_600_000), '{"old":true}');
    sampler = createSampler({ idleWatts: 2, maxWatts: 6 }, { intervalMs: 20, realClock: true });
    sampler.start();

    const deadline = Date.now() + 10_000;
    while (published.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    await sampler.stop();
    const count = published.length;

    expect(count).toBeGreaterThanOrEqual(2);
    expect(published[0].topic).toBe(TOPIC);
    const stored = store.payloads();
    expect(stored).not.toContain('{"old":true}');
    expect(stored).toHaveLength(count);
    expect((JSON.parse(stored[0]) as TelemetryRecord).deviceId).toBe('test-device');

    // Nothing runs after stop().
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(published).toHaveLength(count);
  });

  test('records go into the real Store', async () => {
    const realStore = new Store({ file: path.join(fixture.root, 'bitnet-edge.db'), logger: createLogger('silent') });
    realStore.open();
    try {
      const realSampler = new TelemetrySampler({
        intervalMs: 20,
        deviceId: 'test-device',
        modelId: 'model-abc',
        topic: TOPIC,
        counters,
        store: realStore,
        retentionHours: 1,
        publish: (topic, payload) => published.push({ topic, payload }),
        logger: createLogger('silent'),
        readers: {
          system: new SystemSampler({ sysfsRoot: fixture.root, runRoot: fixture.root, vcgencmdPath: null }),
          power: new PowerMeter({ sysfsRoot: fixture.root, vcgencmdPath: null, estimate: null }),
        },
      });
      realSampler.start();
      const deadline = Date.now() + 10_000;
      while (published.length < 1 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      await realSampler.stop();

      // Pruning everything older than a time after the samples counts the stored rows.
      const stored = realStore.pruneTelemetry(new Date(Date.now() + 3_600_000));
      expect(stored).toBe(published.length);
      expect(stored).toBeGreaterThanOrEqual(1);
    } finally {
      realStore.close();
    }
  });
});
