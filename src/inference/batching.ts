/** Limits of one model run. */
export interface BatchLimits {
  /** Maximum number of sequences in one run. */
  maxBatchSize: number;
  /** Maximum number of tokens in one run, padding included (batch size × longest sequence). */
  maxBatchTokens: number;
}

/**
 * Smallest share of real tokens in a batch. Padding costs as much compute as real tokens, so
 * a sequence that would push padding above a quarter of the batch starts a new batch.
 */
const MIN_REAL_TOKEN_SHARE = 0.75;

/**
 * Groups sequences of similar length into batches. Returns the indices of `lengths` per batch,
 * shortest sequences first. A sequence longer than `maxBatchTokens` gets a batch of its own.
 */
export function planBatches(lengths: readonly number[], limits: BatchLimits): number[][] {
  const order = lengths.map((_, index) => index).sort((a, b) => lengths[a] - lengths[b] || a - b);
  const batches: number[][] = [];
  let current: number[] = [];
  let realTokens = 0;

  for (const index of order) {
    const length = lengths[index];
    // Sorted ascending, so the newcomer is the longest sequence and sets the padded width.
    const size = current.length + 1;
    const paddedTokens = size * length;
    const fits =
      size <= limits.maxBatchSize &&
      paddedTokens <= limits.maxBatchTokens &&
      realTokens + length >= MIN_REAL_TOKEN_SHARE * paddedTokens;

    if (current.length > 0 && !fits) {
      batches.push(current);
      current = [];
      realTokens = 0;
    }
    current.push(index);
    realTokens += length;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

/** Model inputs of one batch, row-major [batchSize, seqLength]. */
export interface PackedBatch {
  batchSize: number;
  seqLength: number;
  inputIds: BigInt64Array;
  /** 1 for a real token, 0 for right padding. */
  attentionMask: BigInt64Array;
}

/** Packs token id lists into one batch, padded on the right with `padId` to the longest list. */
export function packBatch(sequences: ReadonlyArray<readonly number[]>, padId: number): PackedBatch {
  const batchSize = sequences.length;
  const seqLength = Math.max(...sequences.map((ids) => ids.length));
  const inputIds = new BigInt64Array(batchSize * seqLength).fill(BigInt(padId));
  const attentionMask = new BigInt64Array(batchSize * seqLength);

  sequences.forEach((ids, row) => {
    const offset = row * seqLength;
    ids.forEach((id, column) => {
      inputIds[offset + column] = BigInt(id);
      attentionMask[offset + column] = 1n;
    });
  });
  return { batchSize, seqLength, inputIds, attentionMask };
}
