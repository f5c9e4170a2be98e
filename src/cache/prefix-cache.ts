import { createHash } from 'node:crypto';
import type { PastState } from '../inference/protocol';

/** Sizes of the past keys and values of one model, from the manifest's `prefixCache`. */
export interface PastLayout {
  layers: number;
  heads: number;
  headDim: number;
  stateSumWidth: number;
}

/**
 * Model state of a run of token positions between two block boundaries. Causal attention makes
 * all of it depend only on the tokens up to its end, so any sequence with the same token prefix
 * can reuse it.
 */
export interface PrefixBlock {
  /** Token positions in the block. */
  length: number;
  /** Per layer, float32 [heads, length, headDim]: the block's keys. */
  keys: Float32Array[];
  /** Per layer, float32 [heads, length, headDim]: the block's values. */
  values: Float32Array[];
  /** Sum of the pooled states of every position from 0 to the block's end, float32 [stateSumWidth]. */
  stateSum: Float32Array;
  /** Per-position graph outputs (such as `lm_logits`) of the block's positions, keyed by output name, [length, width]. */
  positionOutputs: Record<string, Float32Array>;
}

export interface PrefixCacheOptions {
  /** Estimated memory limit in bytes. Least recently used blocks are evicted beyond it; 0 turns the cache off. */
  maxBytes: number;
  /** Residues per block. Boundaries lie after the leading special tokens and every `blockSize` residues. */
  blockSize: number;
}

/** Counters since the cache was created. */
export interface PrefixCacheStats {
  /** Lookups that found at least one cached block. */
  hits: number;
  /** Lookups that found none. */
  misses: number;
  /** Blocks stored. */
  entries: number;
  /** Estimated bytes of the stored blocks. */
  bytes: number;
  /** Blocks evicted to stay under maxBytes. */
  evictions: number;
  maxBytes: number;
}

/** Result of a lookup: the blocks of the longest cached prefix, in position order. */
export interface PrefixHit {
  /** Token positions covered, the sum of the blocks' lengths. */
  length: number;
  blocks: PrefixBlock[];
}

interface Entry {
  /** Token position where the block starts: 0 or an earlier boundary, whose entry is the parent. */
  start: number;
  parentKey: string | null;
  block: PrefixBlock;
  bytes: number;
}

/** Estimated bytes of one entry besides its arrays: the key, the Map slot and the objects. */
const ENTRY_OVERHEAD_BYTES = 256;

function blockBytes(block: PrefixBlock): number {
  const arrays = [...block.keys, ...block.values, block.stateSum, ...Object.values(block.positionOutputs)];
  return arrays.reduce((sum, array) => sum + array.byteLength, ENTRY_OVERHEAD_BYTES);
}

/**
 * Returns the token lengths of the block boundaries of a sequence of `tokenCount` tokens whose
 * first `leadingTokens` are special tokens (such as `<bos>`): `leadingTokens + k * blockSize`
 * for k = 1, 2, ... up to `tokenCount`.
 */
export function blockBoundaries(tokenCount: number, leadingTokens: number, blockSize: number): number[] {
  const boundaries: number[] = [];
  for (let end = leadingTokens + blockSize; end <= tokenCount; end += blockSize) boundaries.push(end);
  return boundaries;
}

/**
 * Returns the cache key of every boundary in `boundaries`. The key of a boundary is the SHA-256
 * of the previous boundary's key (or of the model id, for the first) and the block's token ids,
 * so it identifies the model and the whole token prefix up to the boundary.
 */
export function prefixKeys(modelId: string, tokens: readonly number[], boundaries: readonly number[]): string[] {
  let previous = createHash('sha256').update(`bitnet-edge prefix cache\0${modelId}`).digest('hex');
  let start = 0;
  return boundaries.map((end) => {
    const ids = Int32Array.from(tokens.slice(start, end));
    previous = createHash('sha256').update(previous).update(Buffer.from(ids.buffer)).digest('hex');
    start = end;
    return previous;
  });
}

/**
 * An in-memory LRU cache of past keys and values. Boundaries lie every `blockSize` residues,
 * and an entry covers the positions from one boundary (or the start) to a later one: one block,
 * or several when the caller ran them at once. An entry holds only its own positions and the
 * state sum at its end, and is keyed by the hash of the model id and the whole token prefix up to
 * its end (see prefixKeys). Sequences that share a prefix share its entries, so memory grows
 * linearly with the positions stored. A prefix is usable only when a chain of entries, each
 * starting where the one before ended, covers it. A lookup touches the entries of the prefix it
 * returns from the last to the first, and a store touches the parent chain of the new entry the
 * same way, so a parent is always used more recently than its children and eviction takes
 * children first.
 */
export class PrefixCache {
  private readonly entries = new Map<string, Entry>();
  private readonly counters = { hits: 0, misses: 0, bytes: 0, evictions: 0 };

  constructor(private readonly options: PrefixCacheOptions) {
    if (!Number.isInteger(options.blockSize) || options.blockSize < 1) {
      throw new RangeError(`prefix cache block size ${options.blockSize} is invalid: expected a positive integer of residues`);
    }
    if (!Number.isInteger(options.maxBytes) || options.maxBytes < 0) {
      throw new RangeError(`prefix cache size ${options.maxBytes} is invalid: expected a non-negative integer of bytes`);
    }
  }

  get blockSize(): number {
    return this.options.blockSize;
  }

  get enabled(): boolean {
    return this.options.maxBytes > 0;
  }

  get stats(): PrefixCacheStats {
    return { ...this.counters, entries: this.entries.size, maxBytes: this.options.maxBytes };
  }

  /** Returns the block boundaries of a token sequence, per this cache's block size. */
  boundaries(tokenCount: number, leadingTokens: number): number[] {
    return blockBoundaries(tokenCount, leadingTokens, this.options.blockSize);
  }

  /**
   * Finds the longest cached prefix of `tokens` that ends at a block boundary at or before
   * `maxLength` tokens, or returns null and counts a miss when there is none.
   */
  lookup(modelId: string, tokens: readonly number[], leadingTokens: number, maxLength: number): PrefixHit | null {
    const boundaries = this.boundaries(Math.min(maxLength, tokens.length), leadingTokens);
    const keys = prefixKeys(modelId, tokens, boundaries);

    // An entry at a boundary is usable when it starts at 0 or at a usable boundary. Entries of
    // another chunking of the same prefix can start elsewhere, so every boundary is checked.
    const usable = new Map<number, { key: string; entry: Entry }>();
    keys.forEach((key, index) => {
      const entry = this.entries.get(key);
      if (entry && (entry.start === 0 || usable.has(entry.start))) usable.set(boundaries[index], { key, entry });
    });
    const chain: Array<{ key: string; entry: Entry }> = [];
    const covered = usable.size > 0 ? Math.max(...usable.keys()) : 0;
    for (let end = covered; end > 0; ) {
      const link = usable.get(end)!;
      chain.unshift(link);
      end = link.entry.start;
    }
    if (chain.length === 0) {
      this.counters.misses += 1;
      return null;
    }

    for (let index = chain.length - 1; index >= 0; index--) this.touch(chain[index].key, chain[index].entry);
    this.counters.hits += 1;
    return { length: covered, blocks: chain.map(({ entry }) => entry.block) };
  }

  /**
   * Stores the positions from `start` (0 or a boundary) to boundary `end` of `tokens`. Returns
   * false, storing nothing, when the cache is off, `start` or `end` is not a boundary, or the
   * block's length does not match. It also returns false when the entry ending at `start` is not
   * cached, because the block could never be used, or when the block alone exceeds maxBytes. An
   * entry already stored for the same prefix is kept.
   */
  store(modelId: string, tokens: readonly number[], leadingTokens: number, start: number, end: number, block: PrefixBlock): boolean {
    if (!this.enabled) return false;
    const boundaries = this.boundaries(Math.min(end, tokens.length), leadingTokens);
    const position = boundaries.indexOf(end);
    const parentPosition = boundaries.indexOf(start);
    if (position < 0 || (start !== 0 && (parentPosition < 0 || parentPosition >= position))) return false;
    if (block.length !== end - start) return false;

    const keys = prefixKeys(modelId, tokens, boundaries.slice(0, position + 1));
    const key = keys[position];
    const parentKey = start === 0 ? null : keys[parentPosition];
    if (parentKey !== null && !this.entries.has(parentKey)) return false;

    const bytes = blockBytes(block);
    if (bytes > this.options.maxBytes) return false;

    const existing = this.entries.get(key);
    if (existing) {
      this.touch(key, existing);
    } else {
      this.entries.set(key, { start, parentKey, block, bytes });
      this.counters.bytes += bytes;
    }
    for (let ancestor = parentKey; ancestor !== null; ) {
      const entry = this.entries.get(ancestor);
      if (!entry) break;
      this.touch(ancestor, entry);
      ancestor = entry.parentKey;
    }
    this.evict(key);
    return true;
  }

  /** Removes every entry. The hit and miss counters keep counting. */
  clear(): void {
    this.entries.clear();
    this.counters.bytes = 0;
  }

  /** Moves an entry to the most recently used end of the Map's insertion order. */
  private touch(key: string, entry: Entry): void {
    this.entries.delete(key);
    this.entries.set(key, entry);
  }

  /** Evicts least recently used entries until the total is under maxBytes, never `keep`. */
  private evict(keep: string): void {
    for (const [key, entry] of this.entries) {
      if (this.counters.bytes <= this.options.maxBytes) return;
      if (key === keep) continue;
      this.entries.delete(key);
      this.counters.bytes -= entry.bytes;
      this.counters.evictions += 1;
    }
  }
}

/**
 * Cuts block positions [from, to) of batch row `row` out of a run's present state, whose keys
 * and values are [batch, heads, present.length, headDim] per layer. `stateSum` is row `row` of
 * the present state sum, which covers the positions up to `to` only when the run ended at `to`.
 */
export function sliceBlock(
  present: PastState,
  layout: PastLayout,
  row: number,
  from: number,
  to: number,
  positionOutputs: Record<string, Float32Array>,
): PrefixBlock {
  const length = to - from;
  const { heads, headDim, stateSumWidth } = layout;
  const cut = (tensor: Float32Array): Float32Array => {
    const out = new Float32Array(heads * length * headDim);
    for (let head = 0; head < heads; head++) {
      const source = ((row * heads + head) * present.length + from) * headDim;
      out.set(tensor.subarray(source, source + length * headDim), head * length * headDim);
    }
    return out;
  };
  return {
    length,
    keys: present.keys.map(cut),
    values: present.values.map(cut),
    stateSum: present.stateSum.slice(row * stateSumWidth, (row + 1) * stateSumWidth),
    positionOutputs,
  };
}

/**
 * Joins cached blocks into the past of a run of `batchSize` rows, each row the same prefix: keys
 * and values [batchSize, heads, length, headDim] per layer and the last block's state sum.
 */
export function assemblePast(blocks: readonly PrefixBlock[], layout: PastLayout, batchSize: number): PastState {
  const length = blocks.reduce((sum, block) => sum + block.length, 0);
  const { heads, headDim, stateSumWidth, layers } = layout;
  const rowSize = heads * length * headDim;

  const join = (pick: (block: PrefixBlock) => Float32Array): Float32Array => {
    const out = new Float32Array(batchSize * rowSize);
    let offset = 0;
    for (const block of blocks) {
      const source = pick(block);
      for (let head = 0; head < heads; head++) {
        const from = head * block.length * headDim;
        out.set(source.subarray(from, from + block.length * headDim), (head * length + offset) * headDim);
      }
      offset += block.length;
    }
    for (let row = 1; row < batchSize; row++) out.copyWithin(row * rowSize, 0, rowSize);
    return out;
  };

  const keys = Array.from({ length: layers }, (_, layer) => join((block) => block.keys[layer]));
  const values = Array.from({ length: layers }, (_, layer) => join((block) => block.values[layer]));
  const stateSum = new Float32Array(batchSize * stateSumWidth);
  const last = blocks[blocks.length - 1];
  for (let row = 0; row < batchSize; row++) stateSum.set(last ? last.stateSum : new Float32Array(stateSumWidth), row * stateSumWidth);
  return { length, keys, values, stateSum };
}

/** Repeats row `row` of a past `batchSize` times, for a batch of continuations of one prefix. */
export function tilePast(past: PastState, layout: PastLayout, row: number, batchSize: number): PastState {
  const rowSize = layout.heads * past.length * layout.headDim;
  const tile = (tensor: Float32Array, size: number): Float32Array => {
    const out = new Float32Array(batchSize * size);
    const source = tensor.subarray(row * size, (row + 1) * size);
    for (let index = 0; index < batchSize; index++) out.set(source, index * size);
    return out;
  };
  return {
    length: past.length,
    keys: past.keys.map((tensor) => tile(tensor, rowSize)),
    values: past.values.map((tensor) => tile(tensor, rowSize)),
    stateSum: tile(past.stateSum, layout.stateSumWidth),
  };
}
