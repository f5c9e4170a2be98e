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

/** A predicted domain: a run of residues tagged with one family by the domain head. */
export interface DomainSpan {
  /** Family name from the manifest, e.g. a Pfam family such as "Pkinase". */
  family: string;
  /** Family accession, e.g. "PF00069.17". */
  accession: string;
  description: string;
  /** First residue, 1-based on the normalized sequence. */
  start: number;
  /** Last residue, 1-based and inclusive. */
  end: number;
  /** Mean family probability over the residues from start to end. */
  score: number;
}

/**
 * Per-residue output, present only when the request asked for it (`options.residues`). Every
 * array has one entry per residue of the normalized sequence, in sequence order.
 */
export interface ResidueScores {
  /** Column order of `nextResidue`: the 20 standard amino acids. */
  aminoAcids: string;
  /**
   * p(residue_t | residues_<t) of the observed residue from the next-residue head, over the whole
   * vocabulary as in `lm.logLikelihood`. Null for a residue with no position before it, which
   * happens only when the model adds no start token.
   */
  observed: Array<number | null>;
  /**
   * Distribution of the residue at each position given the residues before it, over the 20
   * amino acids of `aminoAcids` (renormalized over them, so each row sums to 1). Null like `observed`.
   */
  nextResidue: Array<number[] | null>;
  /** Column order of `domain`: "none", then the domain families. Present when the model has a domain head. */
  domainClasses?: string[];
  /** Softmax over `domainClasses` per residue. Present when the model has a domain head. */
  domain?: number[][];
}

/** Request options that change what a prediction contains. */
export interface PredictOptions {
  /** Adds `residues` (per-residue probabilities) to the prediction. */
  residues?: boolean;
}

/**
 * Serializes the options that change the model output in a fixed order, for result cache keys.
 * No options, or only options at their defaults, give the empty string.
 */
export function predictOptionsKey(options: PredictOptions | undefined): string {
  return options?.residues === true ? 'residues' : '';
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
  /** Present when the model has a domain head. Spans are sorted by start, then family order. */
  domains?: { predicted: DomainSpan[] };
  /** Present only when the request set `options.residues`. */
  residues?: ResidueScores;
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
