/** Limits of one model run. */
export interface BatchLimits {
  /** Maximum number of sequences in one run. */
  maxBatchSize: number;
  /** Maximum number of tokens in one run, padding included (batch size × padded length). */
  maxBatchTokens: number;
  /**
   * Sequence lengths a run is padded to, ascending. A batch takes the smallest one that holds its
   * longest sequence, so onnxruntime sees a few recurring shapes. A batch longer than the last one
   * is padded to its longest sequence. Empty or absent: every batch is padded to its longest sequence.
   */
  padLengths?: readonly number[];
}

/** Returns the smallest of `padLengths` (ascending) that fits `length`, or `length` when none does. */
export function paddedLength(length: number, padLengths: readonly number[] = []): number {
  return padLengths.find((padLength) => padLength >= length) ?? length;
}

/**
 * Smallest share of real tokens in a batch. Padding costs as much compute as real tokens, so
 * a sequence that would push padding above a quarter of the batch starts a new batch.
 */
const MIN_REAL_TOKEN_SHARE = 0.75;

/**
 * Groups sequences of similar length into batches. Returns the indices of `lengths` per batch,
 * shortest sequences first. A sequence longer than `maxBatchTokens` gets a batch of its own.
 * The real-token share counts the padding up to the batch's longest sequence only, because the
 * padding up to a fixed pad length is the same for any grouping.
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
    const fits =
      size <= limits.maxBatchSize &&
      size * paddedLength(length, limits.padLengths) <= limits.maxBatchTokens &&
      realTokens + length >= MIN_REAL_TOKEN_SHARE * size * length;

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

/**
 * Packs token id lists into one batch, padded on the right with `padId` to the longest list, or
 * to the smallest of `padLengths` (ascending) that fits it.
 */
export function packBatch(sequences: ReadonlyArray<readonly number[]>, padId: number, padLengths: readonly number[] = []): PackedBatch {
  const batchSize = sequences.length;
  const seqLength = paddedLength(Math.max(...sequences.map((ids) => ids.length)), padLengths);
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
