import type { LanguageModelScores } from '../contracts/prediction';

/** ln softmax(logits)[target] over one row, computed with the max subtracted so exp never overflows. */
export function logSoftmaxAt(logits: ArrayLike<number>, start: number, width: number, target: number): number {
  let max = -Infinity;
  for (let i = 0; i < width; i++) max = Math.max(max, logits[start + i]);

  let sumExp = 0;
  for (let i = 0; i < width; i++) sumExp += Math.exp(logits[start + i] - max);
  return logits[start + target] - max - Math.log(sumExp);
}

/**
 * Scores one sequence or window with the next-token head. `logits` contains its rows
 * [seqLength, vocabSize], row-major, where row t predicts token t + 1. Only residue tokens are
 * scored: the `residueCount` tokens from `ids[firstResidueIndex]`, less the first
 * `firstScoredResidue` of them, each from the row before it. A residue at position 0 has no row
 * before it and is skipped, which happens only when the manifest adds no `<bos>`.
 */
export function scoreLanguageModel(
  logits: ArrayLike<number>,
  vocabSize: number,
  ids: readonly number[],
  firstResidueIndex: number,
  residueCount: number,
  firstScoredResidue = 0,
): LanguageModelScores {
  let logLikelihood = 0;
  let scoredResidues = 0;

  const firstPosition = Math.max(firstResidueIndex + firstScoredResidue, 1);
  for (let position = firstPosition; position < firstResidueIndex + residueCount; position++) {
    const row = (position - 1) * vocabSize;
    logLikelihood += logSoftmaxAt(logits, row, vocabSize, ids[position]);
    scoredResidues += 1;
  }
  return { logLikelihood, perplexity: perplexityOf(logLikelihood, scoredResidues), scoredResidues };
}

/** exp(-logLikelihood / scoredResidues), or 1 for no residues. */
export function perplexityOf(logLikelihood: number, scoredResidues: number): number {
  // With nothing scored, exp(-0 / 0) would be NaN, which JSON cannot carry, so the empty product 1 is used.
  return scoredResidues > 0 ? Math.exp(-logLikelihood / scoredResidues) : 1;
}
