import { assemblePast, blockBoundaries, PrefixCache, prefixKeys, sliceBlock, tilePast, type PastLayout, type PrefixBlock } from '../../src/cache/prefix-cache';
import type { PastState } from '../../src/inference/protocol';

const LAYOUT: PastLayout = { layers: 2, heads: 2, headDim: 3, stateSumWidth: 4 };
const MODEL = 'sha256:model-a';

/** `<bos>` (1) followed by residue tokens 4, 5, 6, ... */
function tokens(residues: number, offset = 0): number[] {
  return [1, ...Array.from({ length: residues }, (_, i) => 4 + ((i + offset) % 20))];
}

/** Builds a block whose every value is `fill`, with a per-position output of width 5. */
function block(length: number, fill = 1): PrefixBlock {
  const size = LAYOUT.heads * length * LAYOUT.headDim;
  return {
    length,
    keys: [new Float32Array(size).fill(fill), new Float32Array(size).fill(fill)],
    values: [new Float32Array(size).fill(fill), new Float32Array(size).fill(fill)],
    stateSum: new Float32Array(LAYOUT.stateSumWidth).fill(fill),
    positionOutputs: { lm_logits: new Float32Array(length * 5).fill(fill) },
  };
}

/** Stores the blocks of `ids` from the first up to boundary `upTo`, each filled with its index. */
function storeChain(cache: PrefixCache, ids: number[], upTo: number, model = MODEL): void {
  let start = 0;
  cache.boundaries(upTo, 1).forEach((end, index) => {
    expect(cache.store(model, ids, 1, start, end, block(end - start, index + 1))).toBe(true);
    start = end;
  });
}

/** Builds a present state whose every element is distinct: value = 1000 * tensor + index. */
function numberedPresent(batchSize: number, length: number): PastState {
  const size = batchSize * LAYOUT.heads * length * LAYOUT.headDim;
  const numbered = (tensor: number) => Float32Array.from({ length: size }, (_, i) => 1000 * tensor + i);
  return {
    length,
    keys: [numbered(1), numbered(2)],
    values: [numbered(3), numbered(4)],
    stateSum: Float32Array.from({ length: batchSize * LAYOUT.stateSumWidth }, (_, i) => i),
  };
}

describe('block boundaries', () => {
  test('boundaries follow the leading tokens', () => {
    expect(blockBoundaries(1 + 40, 1, 16)).toEqual([17, 33]);
    expect(blockBoundaries(1 + 32, 1, 16)).toEqual([17, 33]);
    expect(blockBoundaries(1 + 15, 1, 16)).toEqual([]);
  });

  test('keys depend on model and whole prefix', () => {
    const ids = tokens(40);
    const other = [...ids];
    other[3] = 9;

    const [first, second] = prefixKeys(MODEL, ids, [17, 33]);
    const [otherFirst, otherSecond] = prefixKeys(MODEL, other, [17, 33]);
    const [modelFirst] = prefixKeys('sha256:model-b', ids, [17]);
    expect(otherFirst).not.toBe(first);
    expect(otherSecond).not.toBe(second);
    expect(modelFirst).not.toBe(first);
    expect(prefixKeys(MODEL, ids.slice(0, 33), [17, 33])).toEqual([first, second]);
  });
});

describe('prefix cache', () => {
  test('lookup returns the longest cached boundary', () => {
    const cache = new PrefixCache({ maxBytes: 1 << 20, blockSize: 16 });
    const ids = tokens(60);
    storeChain(cache, ids, 49);

    const hit = cache.lookup(MODEL, ids, 1, ids.length);
    expect(hit?.length).toBe(49);
    expect(hit?.blocks.map((entry) => entry.length)).toEqual([17, 16, 16]);
    expect(hit?.blocks.map((entry) => entry.stateSum[0])).toEqual([1, 2, 3]);
  });

  test('lookup stops at maxLength', () => {
    const cache = new PrefixCache({ maxBytes: 1 << 20, blockSize: 16 });
    const ids = tokens(60);
    storeChain(cache, ids, 49);

    expect(cache.lookup(MODEL, ids, 1, 48)?.length).toBe(33);
    expect(cache.lookup(MODEL, ids, 1, 33)?.length).toBe(33);
    expect(cache.lookup(MODEL, ids, 1, 16)).toBeNull();
  });

  test('sequences sharing a prefix share its blocks', () => {
    const cache = new PrefixCache({ maxBytes: 1 << 20, blockSize: 16 });
    const ids = tokens(60);
    storeChain(cache, ids, 49);
    const sibling = [...ids];
    sibling[40] = ids[40] === 9 ? 10 : 9;

    expect(cache.lookup(MODEL, sibling, 1, sibling.length)?.length).toBe(33);
    expect(cache.stats.entries).toBe(3);
  });

  test('entry may span several blocks', () => {
    const cache = new PrefixCache({ maxBytes: 1 << 20, blockSize: 16 });
    const ids = tokens(60);
    expect(cache.store(MODEL, ids, 1, 0, 17, block(17, 1))).toBe(true);
    expect(cache.store(MODEL, ids, 1, 17, 49, block(32, 2))).toBe(true);

    expect(cache.lookup(MODEL, ids, 1, 60)?.blocks.map((entry) => entry.length)).toEqual([17, 32]);
    expect(cache.lookup(MODEL, ids, 1, 48)?.length).toBe(17);
  });

  test('chains of two chunkings combine', () => {
    const cache = new PrefixCache({ maxBytes: 1 << 20, blockSize: 16 });
    const ids = tokens(80);
    expect(cache.store(MODEL, ids, 1, 0, 33, block(33, 1))).toBe(true);
    expect(cache.store(MODEL, ids, 1, 33, 65, block(32, 2))).toBe(true);
    // Another request ran the same prefix in single blocks up to 49.
    expect(cache.store(MODEL, ids, 1, 0, 17, block(17, 3))).toBe(true);
    expect(cache.store(MODEL, ids, 1, 17, 33, block(16, 4))).toBe(true);

    const hit = cache.lookup(MODEL, ids, 1, 80);
    expect(hit?.length).toBe(65);
    expect(hit?.blocks.map((entry) => entry.stateSum[0])).toEqual([1, 2]);
  });

  test('other model misses', () => {
    const cache = new PrefixCache({ maxBytes: 1 << 20, blockSize: 16 });
    const ids = tokens(40);
    storeChain(cache, ids, 33);

    expect(cache.lookup('sha256:model-b', ids, 1, ids.length)).toBeNull();
    expect(cache.stats).toMatchObject({ hits: 0, misses: 1 });
  });

  test('counters count hits, misses and bytes', () => {
    const cache = new PrefixCache({ maxBytes: 1 << 20, blockSize: 16 });
    const ids = tokens(40);
    storeChain(cache, ids, 33);
    cache.lookup(MODEL, ids, 1, 40);
    cache.lookup(MODEL, tokens(40, 3), 1, 40);

    const stats = cache.stats;
    expect(stats.hits).toBe(1);
    expect(stats.misses).toBe(1);
    expect(stats.entries).toBe(2);
    // Two blocks of 17 and 16 positions: 4 tensors of 2 × n × 3 floats, 4 state sum floats and n × 5 logits each.
    const arrayBytes = (n: number) => 4 * (4 * 2 * n * 3 + 4 + n * 5);
    expect(stats.bytes).toBeGreaterThanOrEqual(arrayBytes(17) + arrayBytes(16));
    expect(stats.bytes).toBeLessThan(arrayBytes(17) + arrayBytes(16) + 2 * 1024);
  });

  test('block without its parent is not stored', () => {
    const cache = new PrefixCache({ maxBytes: 1 << 20, blockSize: 16 });
    const ids = tokens(40);

    expect(cache.store(MODEL, ids, 1, 17, 33, block(16))).toBe(false);
    expect(cache.store(MODEL, ids, 1, 0, 20, block(20))).toBe(false);
    expect(cache.store(MODEL, ids, 1, 0, 17, block(16))).toBe(false);
    expect(cache.store(MODEL, ids, 1, 5, 17, block(12))).toBe(false);
    expect(cache.stats.entries).toBe(0);
  });

  test('eviction keeps memory under maxBytes, children first', () => {
    const probe = new PrefixCache({ maxBytes: 1 << 20, blockSize: 16 });
    storeChain(probe, tokens(40), 33);
    const twoBlocks = probe.stats.bytes;

    // Room for about three blocks: a second chain of two evicts the first chain's child.
    const cache = new PrefixCache({ maxBytes: Math.floor(twoBlocks * 1.6), blockSize: 16 });
    const first = tokens(40);
    const second = tokens(40, 7);
    storeChain(cache, first, 33);
    storeChain(cache, second, 33);

    expect(cache.stats.bytes).toBeLessThanOrEqual(Math.floor(twoBlocks * 1.6));
    expect(cache.stats.evictions).toBe(1);
    expect(cache.lookup(MODEL, first, 1, 40)?.length).toBe(17);
    expect(cache.lookup(MODEL, second, 1, 40)?.length).toBe(33);
  });

  test('used prefix survives eviction', () => {
    const probe = new PrefixCache({ maxBytes: 1 << 20, blockSize: 16 });
    storeChain(probe, tokens(40), 33);
    const twoBlocks = probe.stats.bytes;

    const cache = new PrefixCache({ maxBytes: Math.floor(twoBlocks * 1.6), blockSize: 16 });
    const first = tokens(40);
    storeChain(cache, first, 33);
    storeChain(cache, tokens(40, 7), 17);
    cache.lookup(MODEL, first, 1, 40);
    storeChain(cache, tokens(40, 11), 17);

    expect(cache.lookup(MODEL, first, 1, 40)?.length).toBe(33);
  });

  test('zero maxBytes stores nothing', () => {
    const cache = new PrefixCache({ maxBytes: 0, blockSize: 16 });

    expect(cache.enabled).toBe(false);
    expect(cache.store(MODEL, tokens(20), 1, 0, 17, block(17))).toBe(false);
    expect(cache.lookup(MODEL, tokens(20), 1, 20)).toBeNull();
  });

  test('invalid block size is rejected', () => {
    expect(() => new PrefixCache({ maxBytes: 1, blockSize: 0 })).toThrow(/block size 0 is invalid/);
  });
});

describe('past tensors', () => {
  test('sliced blocks assemble to the original row', () => {
    const present = numberedPresent(2, 10);
    const row = 1;
    const blocks = [sliceBlock(present, LAYOUT, row, 0, 4, {}), sliceBlock(present, LAYOUT, row, 4, 10, {})];
    const past = assemblePast(blocks, LAYOUT, 1);
    const expected = tilePast(present, LAYOUT, row, 1);

    expect(past.length).toBe(10);
    past.keys.forEach((tensor, layer) => expect(Array.from(tensor)).toEqual(Array.from(expected.keys[layer])));
    past.values.forEach((tensor, layer) => expect(Array.from(tensor)).toEqual(Array.from(expected.values[layer])));
    expect(Array.from(past.stateSum)).toEqual(Array.from(present.stateSum.slice(4, 8)));
  });

  test('assembled past repeats the prefix on every row', () => {
    const present = numberedPresent(1, 6);
    const blocks = [sliceBlock(present, LAYOUT, 0, 0, 6, {})];
    const past = assemblePast(blocks, LAYOUT, 3);
    const rowSize = LAYOUT.heads * 6 * LAYOUT.headDim;

    expect(past.keys[0]).toHaveLength(3 * rowSize);
    for (let row = 1; row < 3; row++) {
      expect(Array.from(past.keys[1].subarray(row * rowSize, (row + 1) * rowSize))).toEqual(Array.from(present.keys[1]));
      expect(Array.from(past.stateSum.subarray(row * 4, (row + 1) * 4))).toEqual(Array.from(present.stateSum));
    }
  });
});
