import type { ResidueScores } from '../contracts/prediction';
import { softmaxRows } from './domains';
import { logSoftmaxAt } from './language-model';
import type { EncodedWindow } from './tokenizer';

/** Column order of the per-residue next-residue distribution. */
export const AMINO_ACIDS = 'ACDEFGHIKLMNPQRSTVWY';

/** Per-residue language model output of the residues one window scores. */
export interface WindowResidueLm {
  observed: Array<number | null>;
  nextResidue: Array<number[] | null>;
}

/**
 * Rounds a probability to 4 significant digits, which keeps per-residue results about a third of
 * their full size and still separates probabilities far below 1e-4.
 */
export function roundProbability(probability: number): number {
  return Number(probability.toPrecision(4));
}

/** Returns the token id of each letter of AMINO_ACIDS, or throws when the vocabulary lacks one. */
export function aminoAcidTokenIds(vocab: readonly string[]): number[] {
  return AMINO_ACIDS.split('').map((letter) => {
    const id = vocab.indexOf(letter);
    if (id < 0) throw new Error(`the model vocabulary has no token "${letter}", so per-residue distributions cannot be given`);
    return id;
  });
}

/**
 * Returns the domain class probabilities of the residues that `window` scores (from its
 * `firstScoredResidue` on), [scored residues, width] row-major. `logits` is one batch row of
 * the domain head, [seqLength, width].
 */
export function windowDomainProbabilities(logits: ArrayLike<number>, width: number, window: EncodedWindow): Float64Array {
  const scored = window.residueCount - window.firstScoredResidue;
  const probabilities = new Float64Array(scored * width);
  const firstPosition = window.firstResidueIndex + window.firstScoredResidue;
  softmaxRows(logits, firstPosition * width, scored, width, probabilities, 0);
  return probabilities;
}

/**
 * Reads the next-residue head for each residue that `window` scores: the probability of the
 * observed token over the whole vocabulary, and the distribution over `aminoAcidIds` renormalized
 * over them. `logits` is one batch row, [seqLength, vocabSize], where row t predicts token t + 1.
 * A residue at token position 0 has no row before it and gets null.
 */
export function windowResidueLm(
  logits: ArrayLike<number>,
  vocabSize: number,
  window: EncodedWindow,
  aminoAcidIds: readonly number[],
): WindowResidueLm {
  const observed: Array<number | null> = [];
  const nextResidue: Array<number[] | null> = [];
  const firstPosition = window.firstResidueIndex + window.firstScoredResidue;

  for (let position = firstPosition; position < window.firstResidueIndex + window.residueCount; position++) {
    if (position === 0) {
      observed.push(null);
      nextResidue.push(null);
      continue;
    }
    const row = (position - 1) * vocabSize;
    observed.push(roundProbability(Math.exp(logSoftmaxAt(logits, row, vocabSize, window.ids[position]))));

    let max = -Infinity;
    for (const id of aminoAcidIds) max = Math.max(max, logits[row + id]);
    const weights = aminoAcidIds.map((id) => Math.exp(logits[row + id] - max));
    const sum = weights.reduce((total, weight) => total + weight, 0);
    nextResidue.push(weights.map((weight) => roundProbability(weight / sum)));
  }
  return { observed, nextResidue };
}

/**
 * Joins the per-residue output of a sequence's windows, in window order. Each window covers the
 * residues it scores, and those ranges follow each other without overlap, so the joined arrays
 * have one entry per residue.
 */
export function joinResidueScores(
  parts: readonly WindowResidueLm[],
  domain: { classes: string[]; probabilities: Float64Array } | null,
): ResidueScores {
  const scores: ResidueScores = {
    aminoAcids: AMINO_ACIDS,
    observed: parts.flatMap((part) => part.observed),
    nextResidue: parts.flatMap((part) => part.nextResidue),
  };
  if (domain) {
    const width = domain.classes.length;
    const rows: number[][] = [];
    for (let offset = 0; offset < domain.probabilities.length; offset += width) {
      rows.push(Array.from(domain.probabilities.subarray(offset, offset + width), roundProbability));
    }
    scores.domainClasses = domain.classes;
    scores.domain = rows;
  }
  return scores;
}
