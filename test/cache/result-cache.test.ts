import fc from 'fast-check';
import { estimateEntryBytes, ResultCache, resultCacheKey } from '../../src/cache/result-cache';
import type { Prediction } from '../../src/contracts/prediction';
import { fakePrediction } from '../intake/helpers';

/** Builds a prediction whose JSON grows by `padding` characters in one label. */
function paddedPrediction(padding: number): Prediction {
  const prediction = fakePrediction();
  prediction.localization.top = [{ label: 'x'.repeat(padding), score: 0.5 }];
  return prediction;
}

describe('ResultCache', () => {
  test('key joins model, hash and options', () => {
    expect(resultCacheKey('model-a', 'abc123', '')).toBe('model-a:abc123:');
    expect(resultCacheKey('model-a', 'abc123', 'x')).not.toBe(resultCacheKey('model-b', 'abc123', 'x'));
  });

  test('get returns stored prediction', () => {
    const cache = new ResultCache({ maxBytes: 1_000_000 });
    const prediction = fakePrediction();
    cache.set('k1', prediction);

    expect(cache.get('k1')).toBe(prediction);
    expect(cache.get('k2')).toBeUndefined();
    expect(cache.stats.hits).toBe(1);
    expect(cache.stats.misses).toBe(1);
    expect(cache.stats.entries).toBe(1);
    expect(cache.stats.bytes).toBe(estimateEntryBytes('k1', prediction));
  });

  test('eviction removes least recently used', () => {
    const entryBytes = estimateEntryBytes('k1', fakePrediction());
    const cache = new ResultCache({ maxBytes: entryBytes * 2 });
    cache.set('k1', fakePrediction());
    cache.set('k2', fakePrediction());
    expect(cache.get('k1')).toBeDefined();

    cache.set('k3', fakePrediction());

    expect(cache.get('k2')).toBeUndefined();
    expect(cache.get('k1')).toBeDefined();
    expect(cache.get('k3')).toBeDefined();
    expect(cache.stats.evictions).toBe(1);
    expect(cache.stats.entries).toBe(2);
  });

  test('replacing a key keeps one entry', () => {
    const cache = new ResultCache({ maxBytes: 1_000_000 });
    cache.set('k1', paddedPrediction(10));
    const replacement = paddedPrediction(100);
    cache.set('k1', replacement);

    expect(cache.stats.entries).toBe(1);
    expect(cache.stats.bytes).toBe(estimateEntryBytes('k1', replacement));
    expect(cache.get('k1')).toBe(replacement);
    expect(cache.stats.evictions).toBe(0);
  });

  test('eviction counts every removed entry', () => {
    const small = estimateEntryBytes('k0', paddedPrediction(0));
    const cache = new ResultCache({ maxBytes: small * 3 });
    for (let i = 0; i < 3; i++) cache.set(`k${i}`, paddedPrediction(0));
    expect(cache.stats.entries).toBe(3);

    // An entry of just under twice the small size pushes out the two oldest and leaves the third.
    const large = paddedPrediction(small / 2 - 10);
    expect(estimateEntryBytes('big', large)).toBeGreaterThan(small);
    expect(estimateEntryBytes('big', large)).toBeLessThanOrEqual(small * 2);
    cache.set('big', large);

    expect(cache.stats.evictions).toBe(2);
    expect(cache.get('k0')).toBeUndefined();
    expect(cache.get('k1')).toBeUndefined();
    expect(cache.get('k2')).toBeDefined();
    expect(cache.get('big')).toBeDefined();
  });

  test('oversize entry is not cached', () => {
    const cache = new ResultCache({ maxBytes: estimateEntryBytes('small', fakePrediction()) * 2 });
    cache.set('small', fakePrediction());
    cache.set('huge', paddedPrediction(10_000));

    expect(cache.get('huge')).toBeUndefined();
    expect(cache.get('small')).toBeDefined();
    expect(cache.stats.entries).toBe(1);
    expect(cache.stats.evictions).toBe(0);
  });

  test('maxBytes zero disables cache', () => {
    const cache = new ResultCache({ maxBytes: 0 });
    cache.set('k1', fakePrediction());

    expect(cache.enabled).toBe(false);
    expect(cache.get('k1')).toBeUndefined();
    expect(cache.stats.entries).toBe(0);
    expect(cache.stats.bytes).toBe(0);
  });

  test('bytes never exceed maxBytes', () => {
    const operation = fc.oneof(
      fc.record({ kind: fc.constant('set' as const), key: fc.integer({ min: 0, max: 20 }), padding: fc.integer({ min: 0, max: 3000 }) }),
      fc.record({ kind: fc.constant('get' as const), key: fc.integer({ min: 0, max: 20 }) }),
    );

    fc.assert(
      fc.property(fc.integer({ min: 0, max: 20_000 }), fc.array(operation, { maxLength: 60 }), (maxBytes, operations) => {
        const cache = new ResultCache({ maxBytes });
        const sizes = new Map<string, number>();
        for (const op of operations) {
          const key = `k${op.key}`;
          if (op.kind === 'get') {
            cache.get(key);
            continue;
          }
          const prediction = paddedPrediction(op.padding);
          cache.set(key, prediction);
          sizes.set(key, estimateEntryBytes(key, prediction));

          const stats = cache.stats;
          expect(stats.bytes).toBeLessThanOrEqual(maxBytes);
          expect(stats.bytes).toBeGreaterThanOrEqual(0);
        }
        expect(cache.stats.entries).toBeLessThanOrEqual(sizes.size);
      }),
      { numRuns: 200 },
    );
  });
});
