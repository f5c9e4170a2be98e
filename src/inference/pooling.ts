import type { LanguageModelScores } from '../contracts/prediction';
import { perplexityOf } from './language-model';

/**
 * Pools per-window logits by a weighted mean, label by label. A single window is returned as
 * is, so a sequence that fits one window scores exactly as it would without pooling.
 */
export function poolWeightedMean(rows: ReadonlyArray<ArrayLike<number>>, weights: readonly number[]): number[] {
  if (rows.length === 0) throw new RangeError('cannot pool zero windows');
  if (rows.length === 1) return Array.from(rows[0]);

  const totalWeight = weights.reduce((sum, weight) => sum + weight, 0);
  if (!(totalWeight > 0)) throw new RangeError(`window weights sum to ${totalWeight}; expected a positive sum`);

  const width = rows[0].length;
  const pooled = new Array<number>(width).fill(0);
  rows.forEach((row, window) => {
    for (let label = 0; label < width; label++) pooled[label] += weights[window] * row[label];
  });
  return pooled.map((sum) => sum / totalWeight);
}

/** Pools per-window logits by their maximum, label by label. */
export function poolMax(rows: ReadonlyArray<ArrayLike<number>>): number[] {
  if (rows.length === 0) throw new RangeError('cannot pool zero windows');

  const pooled = Array.from(rows[0]);
  for (const row of rows.slice(1)) {
    for (let label = 0; label < pooled.length; label++) pooled[label] = Math.max(pooled[label], row[label]);
  }
  return pooled;
}

/** Adds the language model scores of windows that each scored different residues. */
export function sumLanguageModelScores(parts: readonly LanguageModelScores[]): LanguageModelScores {
  const logLikelihood = parts.reduce((sum, part) => sum + part.logLikelihood, 0);
  const scoredResidues = parts.reduce((sum, part) => sum + part.scoredResidues, 0);
  return { logLikelihood, perplexity: perplexityOf(logLikelihood, scoredResidues), scoredResidues };
}
