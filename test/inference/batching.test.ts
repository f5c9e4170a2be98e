import fc from 'fast-check';
import { packBatch, planBatches } from '../../src/inference/batching';

const limits = { maxBatchSize: 4, maxBatchTokens: 1000 };

describe('planBatches', () => {
  test('groups similar lengths apart from long ones', () => {
    expect(planBatches([10, 500, 12, 11], limits)).toEqual([[0, 3, 2], [1]]);
  });

  test('splits at maxBatchSize', () => {
    const batches = planBatches([5, 5, 5, 5, 5, 5], limits);
    expect(batches).toEqual([
      [0, 1, 2, 3],
      [4, 5],
    ]);
  });

  test('gives an oversized sequence its own batch', () => {
    expect(planBatches([2000, 10], limits)).toEqual([[1], [0]]);
  });

  test('returns no batches for no sequences', () => {
    expect(planBatches([], limits)).toEqual([]);
  });

  test('keeps every index once within the limits', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 600 }), { maxLength: 40 }), (lengths) => {
        const batches = planBatches(lengths, limits);
        const seen = batches.flat().sort((a, b) => a - b);
        expect(seen).toEqual(lengths.map((_, index) => index));

        for (const batch of batches) {
          if (batch.length === 1) continue;
          const batchLengths = batch.map((index) => lengths[index]);
          const padded = batch.length * Math.max(...batchLengths);
          const real = batchLengths.reduce((sum, length) => sum + length, 0);
          expect(batch.length).toBeLessThanOrEqual(limits.maxBatchSize);
          expect(padded).toBeLessThanOrEqual(limits.maxBatchTokens);
          expect(real).toBeGreaterThanOrEqual(0.75 * padded);
        }
      }),
    );
  });
});

describe('packBatch', () => {
  test('pads on the right and masks the padding', () => {
    const batch = packBatch(
      [
        [1, 4, 5],
        [1, 6],
      ],
      0,
    );

    expect(batch.batchSize).toBe(2);
    expect(batch.seqLength).toBe(3);
    expect(Array.from(batch.inputIds, Number)).toEqual([1, 4, 5, 1, 6, 0]);
    expect(Array.from(batch.attentionMask, Number)).toEqual([1, 1, 1, 1, 1, 0]);
  });

  test('uses the manifest pad id', () => {
    const batch = packBatch([[1, 4], [1]], 7);
    expect(Array.from(batch.inputIds, Number)).toEqual([1, 4, 1, 7]);
  });
});
