/** One label of a multi-label head with its sigmoid score in [0, 1]. */
export interface ScoredLabel {
  label: string;
  score: number;
}

/** A GO term with its score after true-path propagation. */
export interface ScoredGoTerm extends ScoredLabel {
  /** Term name from the manifest, e.g. "cytoplasm". */
  name: string;
  /** GO aspect: F (molecular function), P (biological process) or C (cellular component). */
  aspect: 'F' | 'P' | 'C';
}

/** Output of the next-residue (language model) head for one sequence. */
export interface LanguageModelScores {
  /** Sum of ln p(residue_t | residues_<t) over the scored residues, in nats. */
  logLikelihood: number;
  /** exp(-logLikelihood / scoredResidues). */
  perplexity: number;
  scoredResidues: number;
}

/**
 * Model output for one normalized sequence. Every head lists the labels at or above their
 * tuned threshold (`predicted`) and the best-scoring labels whatever their threshold (`top`).
 */
export interface Prediction {
  modelId: string;
  localization: { predicted: ScoredLabel[]; top: ScoredLabel[] };
  go: { predicted: ScoredGoTerm[]; top: ScoredGoTerm[] };
  /** Present when the model has a function head. */
  function?: { predicted: ScoredLabel[]; top: ScoredLabel[] };
  lm: LanguageModelScores;
  /** Residues the model saw; smaller than the sequence length when it was truncated. */
  residuesUsed: number;
  /**
   * True when some residues were in no window. The engine reads a sequence longer than the
   * model's maximum in windows that cover every residue, so its predictions have false here.
   */
  truncated: boolean;
  /**
   * Overlapping windows the sequence was read in, 1 when it fits the model's maximum. Absent in
   * predictions stored before sequences were windowed, which cut them to the maximum instead.
   */
  windows?: number;
}
