import fc from 'fast-check';
import { packBatch, paddedLength, planBatches } from '../../src/inference/batching';

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

describe('fixed pad lengths', () => {
  const padLengths = [64, 128, 256, 512];

  test('paddedLength picks the smallest that fits', () => {
    expect(paddedLength(1, padLengths)).toBe(64);
    expect(paddedLength(64, padLengths)).toBe(64);
    expect(paddedLength(65, padLengths)).toBe(128);
    expect(paddedLength(512, padLengths)).toBe(512);
  });

  test('paddedLength keeps a length beyond the last', () => {
    expect(paddedLength(600, padLengths)).toBe(600);
    expect(paddedLength(37)).toBe(37);
  });

  test('packBatch pads to the pad length', () => {
    const batch = packBatch([[1, 4, 5], [1, 6]], 0, [4, 8]);

    expect(batch.seqLength).toBe(4);
    expect(Array.from(batch.inputIds, Number)).toEqual([1, 4, 5, 0, 1, 6, 0, 0]);
    expect(Array.from(batch.attentionMask, Number)).toEqual([1, 1, 1, 0, 1, 1, 0, 0]);
  });

  test('token limit counts the padded length', () => {
    // 3 x 70 = 210 real tokens fit in 256, but padded to 128 they take 384.
    const limits = { maxBatchSize: 8, maxBatchTokens: 256, padLengths };
    expect(planBatches([70, 70, 70], limits)).toEqual([[0, 1], [2]]);
    expect(planBatches([70, 70, 70], { maxBatchSize: 8, maxBatchTokens: 256 })).toEqual([[0, 1, 2]]);
  });

  test('real-token share ignores the fixed padding', () => {
    // 129 and 140 share one run padded to 256, although the pad length leaves half of it padding.
    expect(planBatches([129, 140], { maxBatchSize: 8, maxBatchTokens: 4096, padLengths })).toEqual([[0, 1]]);
  });

  test('keeps every index once within the padded limits', () => {
    const padded = { maxBatchSize: 4, maxBatchTokens: 1024, padLengths };
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 600 }), { maxLength: 40 }), (lengths) => {
        const batches = planBatches(lengths, padded);
        expect(batches.flat().sort((a, b) => a - b)).toEqual(lengths.map((_, index) => index));

        for (const batch of batches) {
          if (batch.length === 1) continue;
          const longest = Math.max(...batch.map((index) => lengths[index]));
          expect(batch.length * paddedLength(longest, padLengths)).toBeLessThanOrEqual(padded.maxBatchTokens);
        }
      }),
    );
  });
});
