import path from 'node:path';
import { PrefixCache } from '../../src/cache/prefix-cache';
import { ResultCache } from '../../src/cache/result-cache';
import { createLogger } from '../../src/log';
import { databaseFile, Store } from '../../src/store';
import { Metrics } from '../../src/telemetry/metrics';
import { PowerMeter } from '../../src/telemetry/power';
import { TelemetrySampler } from '../../src/telemetry/sampler';
import { SystemSampler } from '../../src/telemetry/system';
import { fakePrediction } from '../intake/helpers';
import { FixtureFolder } from '../telemetry/fixtures';

describe('memory cache telemetry', () => {
  let fixture: FixtureFolder;
  let store: Store;

  beforeEach(() => {
    fixture = new FixtureFolder();
    store = new Store({ file: databaseFile(path.join(fixture.root, 'data')), logger: createLogger('silent') });
    store.open();
  });

  afterEach(() => {
    store.close();
    fixture.remove();
  });

  function createSampler(metrics: Metrics, cache: ResultCache | null, prefixCache: PrefixCache | null = null): TelemetrySampler {
    const sysfsRoot = path.join(fixture.root, 'sys');
    return new TelemetrySampler({
      intervalMs: 10_000,
      deviceId: 'test-device',
      modelId: 'model-abc',
      topic: 'bitnet-edge/test-device/telemetry',
      counters: () => ({
        ...metrics.snapshot(),
        pendingJobs: 0,
        outboxDepth: 0,
        ...(cache ? { memoryCache: cache.stats } : {}),
        ...(prefixCache ? { prefixCache: prefixCache.stats } : {}),
      }),
      store,
      retentionHours: 1,
      publish: () => undefined,
      logger: createLogger('silent'),
      clock: () => new Date('2026-01-01T00:00:00Z'),
      readers: {
        system: new SystemSampler({ sysfsRoot, runRoot: fixture.root, vcgencmdPath: null }),
        power: new PowerMeter({ sysfsRoot, vcgencmdPath: null, estimate: null }),
      },
    });
  }

  test('record carries memory counters', async () => {
    const metrics = new Metrics();
    const cache = new ResultCache({ maxBytes: 1_000_000 });
    cache.set('k1', fakePrediction());
    cache.get('k1');
    cache.get('k1');
    cache.get('k2');
    metrics.recordDone({ queueWaitMs: 1, inferenceMs: 0, totalMs: 2, residues: 12, cached: true });
    metrics.recordDone({ queueWaitMs: 1, inferenceMs: 9, totalMs: 12, residues: 12, cached: false });

    const record = await createSampler(metrics, cache).sampleNow();

    expect(record.cache.memoryHits).toBe(2);
    expect(record.cache.memoryMisses).toBe(1);
    expect(record.cache.memoryEntries).toBe(1);
    expect(record.cache.memoryBytes).toBe(cache.stats.bytes);
    expect(record.cache.memoryBytes).toBeGreaterThan(0);
    expect(record.cache.resultHitRatio).toBeCloseTo(0.5, 9);
    expect(record.cache.prefixHitRatio).toBeNull();
  });

  test('record carries the prefix cache size', async () => {
    // Room for about two first blocks (17 positions with <bos>), so a third sequence evicts the oldest.
    const size = 2 * 17 * 4;
    const blockBytes = 4 * size * 4 + 16 * 4;
    const prefixCache = new PrefixCache({ maxBytes: Math.floor(2.5 * blockBytes), blockSize: 16 });
    for (let sequence = 0; sequence < 3; sequence++) {
      const ids = [1, ...Array.from({ length: 40 }, (_, i) => 4 + ((i + sequence) % 20))];
      const stored = prefixCache.store('model-abc', ids, 1, 0, 17, {
        length: 17,
        keys: [new Float32Array(size), new Float32Array(size)],
        values: [new Float32Array(size), new Float32Array(size)],
        stateSum: new Float32Array(16),
        positionOutputs: {},
      });
      expect(stored).toBe(true);
    }

    const record = await createSampler(new Metrics(), null, prefixCache).sampleNow();

    expect(record.cache.prefixEntries).toBe(prefixCache.stats.entries);
    expect(record.cache.prefixBytes).toBe(prefixCache.stats.bytes);
    expect(record.cache.prefixBytes).toBeGreaterThan(0);
    expect(record.cache.prefixEvictions).toBeGreaterThan(0);
    expect(record.cache.prefixEvictions).toBe(prefixCache.stats.evictions);
  });

  test('record without cache has zeros', async () => {
    const record = await createSampler(new Metrics(), null).sampleNow();

    expect(record.cache).toEqual({
      resultHitRatio: null,
      prefixHitRatio: null,
      memoryHits: 0,
      memoryMisses: 0,
      memoryBytes: 0,
      memoryEntries: 0,
      prefixEntries: 0,
      prefixBytes: 0,
      prefixEvictions: 0,
    });
  });
});
