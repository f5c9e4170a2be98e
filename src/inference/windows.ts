/**
 * Residues shared by two neighbouring windows when the manifest sets no `tokenizer.windowOverlap`.
 * The model is causal, so a residue near the start of a window has little left context. Each
 * residue is scored by the first window that contains it, so every residue past the first window
 * keeps at least this many residues of left context. With the bundled model's 511-residue window,
 * 128 costs one window more than no overlap for a 2,000-residue protein (5 windows instead of 4).
 */
export const DEFAULT_WINDOW_OVERLAP = 128;

/** A range of residues that the model reads in one run row, 0-based and end-exclusive. */
export interface SequenceWindow {
  start: number;
  end: number;
  /**
   * First residue that this window scores for the language model and counts for pooling. It is
   * `start` for the first window and the previous window's `end` for the others, so each residue
   * is scored once, by the window that gives it the longest left context.
   */
  scoredStart: number;
}

/**
 * Returns the overlap in residues for windows of `maxResidues`: `configured` when set, otherwise
 * DEFAULT_WINDOW_OVERLAP capped at half the window, so a short window still advances by at least half.
 * Throws a RangeError when `configured` is negative, not an integer, or not below `maxResidues`.
 */
export function windowOverlap(maxResidues: number, configured?: number): number {
  if (configured === undefined) return Math.min(DEFAULT_WINDOW_OVERLAP, Math.floor(maxResidues / 2));

  if (!Number.isInteger(configured) || configured < 0 || configured >= maxResidues) {
    throw new RangeError(
      `window overlap ${configured} is invalid: expected an integer from 0 to ${maxResidues - 1} (below the window of ${maxResidues} residues)`,
    );
  }
  return configured;
}

/**
 * Cuts a sequence of `length` residues into windows of `maxResidues` that overlap by at least
 * `overlap` residues. A sequence of up to `maxResidues` gets one window. Otherwise windows start
 * every `maxResidues - overlap` residues and the last window ends at the sequence end, so it can
 * overlap its neighbour by more than `overlap`. Every residue lies in at least one window.
 */
export function planWindows(length: number, maxResidues: number, overlap: number): SequenceWindow[] {
  if (!Number.isInteger(length) || length < 1) throw new RangeError(`sequence length ${length} is invalid: expected a positive integer`);
  if (!Number.isInteger(maxResidues) || maxResidues < 1) {
    throw new RangeError(`window size ${maxResidues} is invalid: expected a positive integer`);
  }
  windowOverlap(maxResidues, overlap);

  if (length <= maxResidues) return [{ start: 0, end: length, scoredStart: 0 }];

  // The smallest count whose regular starts reach the last window's start, length - maxResidues.
  const stride = maxResidues - overlap;
  const count = Math.ceil((length - maxResidues) / stride) + 1;
  const windows: SequenceWindow[] = [];

  for (let index = 0; index < count; index++) {
    const start = index === count - 1 ? length - maxResidues : index * stride;
    const scoredStart = index === 0 ? 0 : windows[index - 1].end;
    windows.push({ start, end: start + maxResidues, scoredStart });
  }
  return windows;
}
