import type { LanguageModelScores, Prediction, PredictOptions, ScoredGoTerm, ScoredLabel } from '../contracts/prediction';
import { decodeDomainSpans, shiftDomainRows } from './domains';
import { scoreLanguageModel } from './language-model';
import type { GoHead, ModelPackage, MultiLabelHead } from './manifest';
import { poolMax, poolWeightedMean, sumLanguageModelScores } from './pooling';
import type { OutputTensor } from './protocol';
import { aminoAcidTokenIds, joinResidueScores, windowDomainProbabilities, windowResidueLm, type WindowResidueLm } from './residue-scores';
import type { EncodedWindow } from './tokenizer';
import { buildAncestorIndex, propagateTruePath } from './true-path';
import type { SequenceWindow } from './windows';

/** Labels listed in `top` of every head, whatever their threshold. */
export const TOP_LABEL_COUNT = 5;

/** Logistic function, written so that exp never overflows for large |x|. */
export function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

/**
 * Splits scored labels into `predicted` (score at or above the label's threshold) and `top`
 * (the best `TOP_LABEL_COUNT`), both sorted by score, highest first. Equal scores keep label order.
 */
export function rankLabels<T extends ScoredLabel>(
  scored: readonly T[],
  thresholds: readonly number[],
): { predicted: T[]; top: T[] } {
  const order = scored.map((_, index) => index).sort((a, b) => scored[b].score - scored[a].score || a - b);
  const ranked = order.map((index) => scored[index]);
  const predicted = order.filter((index) => scored[index].score >= thresholds[index]).map((index) => scored[index]);
  return { predicted, top: ranked.slice(0, TOP_LABEL_COUNT) };
}

/** Per-model data of postprocessing, computed once when the model is loaded. */
export interface PostprocessContext {
  pkg: ModelPackage;
  /** buildAncestorIndex of the GO head's labels. */
  goAncestors: number[][];
}

export function createPostprocessContext(pkg: ModelPackage): PostprocessContext {
  const { heads, goGraph } = pkg.manifest;
  return { pkg, goAncestors: buildAncestorIndex(heads.go.labels, goGraph.parents) };
}

/** Returns the domain head's class names: "none", then its families. */
function domainClasses(context: PostprocessContext): string[] {
  return ['none', ...(context.pkg.manifest.heads.domain?.labels ?? [])];
}

/** Returns the output, after checking that its shape is [batchSize, ...innerDims]. */
function checkedOutput(
  outputs: Record<string, OutputTensor>,
  name: string,
  batchSize: number,
  innerDims: number[],
): OutputTensor {
  const tensor = outputs[name];
  if (!tensor) throw new Error(`model output "${name}" is missing from the run result`);

  const expected = [batchSize, ...innerDims];
  const matches = tensor.dims.length === expected.length && tensor.dims.every((dim, i) => dim === expected[i]);
  if (!matches || tensor.data.length !== expected.reduce((product, dim) => product * dim, 1)) {
    throw new Error(`model output "${name}" has shape [${tensor.dims.join(', ')}], expected [${expected.join(', ')}]`);
  }
  return tensor;
}

function logitRow(tensor: OutputTensor, row: number, width: number): Float32Array {
  return tensor.data.slice(row * width, (row + 1) * width);
}

function multiLabelResult(head: MultiLabelHead, scores: number[]): { predicted: ScoredLabel[]; top: ScoredLabel[] } {
  const scored = head.labels.map((label, i) => ({ label, score: scores[i] }));
  return rankLabels(scored, head.thresholds);
}

function goResult(head: GoHead, scores: number[]): { predicted: ScoredGoTerm[]; top: ScoredGoTerm[] } {
  const scored = head.labels.map((label, i) => ({
    label,
    score: scores[i],
    name: head.names[i],
    aspect: head.aspects[i],
  }));
  return rankLabels(scored, head.thresholds);
}

/** Raw outputs of one window: the logits of each multi-label head and its language model scores. */
export interface WindowScores {
  localizationLogits: Float32Array;
  goLogits: Float32Array;
  /** Present when the model has a function head. */
  functionLogits?: Float32Array;
  /** Scores of the residues from the window's `firstScoredResidue` on. */
  lm: LanguageModelScores;
  /**
   * Domain head's class probabilities at the positions of the residues from `firstScoredResidue`
   * on, [residues, 1 + families] row-major, before buildPrediction moves them back by the head's
   * lookahead. Present when the model has a domain head.
   */
  domainProbabilities?: Float64Array;
  /** Per-residue language model output of the same residues. Present when the row asked for it. */
  residueLm?: WindowResidueLm;
}

/**
 * Reads the raw outputs of one batch into one WindowScores per row. `encoded` are the batch's
 * windows as packed, so `encoded[row]` pairs with output row `row`, and `residueRows[row]` is
 * true for a row whose per-residue output is requested. Throws when an output's shape does not
 * match the batch and the manifest.
 */
export function readWindowScores(
  context: PostprocessContext,
  outputs: Record<string, OutputTensor>,
  encoded: readonly EncodedWindow[],
  seqLength: number,
  residueRows: readonly boolean[] = [],
): WindowScores[] {
  const { heads, tokenizer } = context.pkg.manifest;
  const batchSize = encoded.length;
  const vocabSize = tokenizer.vocab.length;
  const localizationWidth = heads.localization.labels.length;
  const goWidth = heads.go.labels.length;

  const localization = checkedOutput(outputs, heads.localization.output, batchSize, [localizationWidth]);
  const go = checkedOutput(outputs, heads.go.output, batchSize, [goWidth]);
  const lm = checkedOutput(outputs, heads.lm.output, batchSize, [seqLength, vocabSize]);
  const functionHead = heads.function;
  const functionOutput = functionHead
    ? checkedOutput(outputs, functionHead.output, batchSize, [functionHead.labels.length])
    : undefined;
  const domainWidth = heads.domain ? heads.domain.labels.length + 1 : 0;
  const domainOutput = heads.domain ? checkedOutput(outputs, heads.domain.output, batchSize, [seqLength, domainWidth]) : undefined;
  const aminoAcidIds = residueRows.some(Boolean) ? aminoAcidTokenIds(tokenizer.vocab) : [];

  return encoded.map((window, row) => {
    const lmRows = lm.data.subarray(row * seqLength * vocabSize, (row + 1) * seqLength * vocabSize);
    const scores: WindowScores = {
      localizationLogits: logitRow(localization, row, localizationWidth),
      goLogits: logitRow(go, row, goWidth),
      lm: scoreLanguageModel(
        lmRows,
        vocabSize,
        window.ids,
        window.firstResidueIndex,
        window.residueCount,
        window.firstScoredResidue,
      ),
    };
    if (functionHead && functionOutput) {
      scores.functionLogits = logitRow(functionOutput, row, functionHead.labels.length);
    }
    if (domainOutput) {
      const domainRows = domainOutput.data.subarray(row * seqLength * domainWidth, (row + 1) * seqLength * domainWidth);
      scores.domainProbabilities = windowDomainProbabilities(domainRows, domainWidth, window);
    }
    if (residueRows[row]) scores.residueLm = windowResidueLm(lmRows, vocabSize, window, aminoAcidIds);
    return scores;
  });
}

/** Counts the residues of a sequence of `length` that lie in at least one of `windows`, sorted by start. */
function countCoveredResidues(windows: readonly SequenceWindow[], length: number): number {
  let covered = 0;
  let coveredEnd = 0;
  for (const window of windows) {
    const start = Math.max(window.start, coveredEnd);
    const end = Math.min(window.end, length);
    if (end > start) covered += end - start;
    coveredEnd = Math.max(coveredEnd, end);
  }
  return covered;
}

/**
 * Builds the Prediction of a sequence of `length` residues from the scores of its `windows`
 * (planWindows order, `scores[i]` from `windows[i]`).
 *
 * Localization describes the whole chain, so its logits are averaged over the windows, each
 * weighted by the residues it scores (from `scoredStart` to `end`), so a residue in an overlap
 * counts once. A GO term or molecular function that one domain carries belongs to the whole
 * protein wherever the domain sits, so those heads take each label's maximum logit over the
 * windows, which is also the maximum probability. The true-path rule is applied after pooling.
 * The language model scores are summed, since each residue is scored by one window only. The
 * domain head's rows are taken at each residue from the window that scores it for the language
 * model, joined over the whole sequence, and moved back by the head's lookahead (shiftDomainRows),
 * so spans can cross window borders.
 * With `options.residues`, the per-residue output of the same windows is added.
 */
export function buildPrediction(
  context: PostprocessContext,
  windows: readonly SequenceWindow[],
  scores: readonly WindowScores[],
  length: number,
  options: PredictOptions = {},
): Prediction {
  if (windows.length === 0 || windows.length !== scores.length) {
    throw new RangeError(`expected one score row per window, got ${scores.length} rows for ${windows.length} windows`);
  }
  const { manifest, modelId } = context.pkg;
  const { heads } = manifest;
  const weights = windows.map((window) => window.end - window.scoredStart);

  const localization = poolWeightedMean(
    scores.map((window) => window.localizationLogits),
    weights,
  ).map(sigmoid);
  // NOTE: the thresholds were tuned on proteins cut to one window. Taking the maximum over several
  // windows gives a long protein more chances to pass them, and how much that raises false
  // positives has not been measured.
  const go = propagateTruePath(poolMax(scores.map((window) => window.goLogits)).map(sigmoid), context.goAncestors);
  const residuesUsed = countCoveredResidues(windows, length);

  const prediction: Prediction = {
    modelId,
    localization: multiLabelResult(heads.localization, localization),
    go: goResult(heads.go, go),
    lm: sumLanguageModelScores(scores.map((window) => window.lm)),
    residuesUsed,
    truncated: residuesUsed < length,
    windows: windows.length,
  };

  const functionHead = heads.function;
  const functionLogits = scores.map((window) => window.functionLogits);
  if (functionHead && functionLogits.every((row): row is Float32Array => row !== undefined)) {
    prediction.function = multiLabelResult(functionHead, poolMax(functionLogits).map(sigmoid));
  }

  const domainRows = joinDomainProbabilities(scores, length, domainClasses(context).length);
  const domainProbabilities =
    heads.domain && domainRows ? shiftDomainRows(domainRows, length, domainClasses(context).length, heads.domain.lookahead) : null;
  if (heads.domain && domainProbabilities) {
    prediction.domains = { predicted: decodeDomainSpans(domainProbabilities, length, heads.domain) };
  }

  if (options.residues) {
    const parts = scores.map((window) => {
      if (!window.residueLm) throw new Error('per-residue output was requested but a window was run without it');
      return window.residueLm;
    });
    const domain = domainProbabilities ? { classes: domainClasses(context), probabilities: domainProbabilities } : null;
    prediction.residues = joinResidueScores(parts, domain);
  }
  return prediction;
}

/**
 * Joins the windows' domain probabilities into [length, width] in sequence order, or returns
 * null when the windows carry none. Throws when they do not cover `length` residues exactly.
 */
function joinDomainProbabilities(scores: readonly WindowScores[], length: number, width: number): Float64Array | null {
  const parts = scores.map((window) => window.domainProbabilities);
  if (!parts.every((part): part is Float64Array => part !== undefined)) return null;

  const total = parts.reduce((sum, part) => sum + part.length, 0);
  if (total !== length * width) {
    throw new RangeError(`the windows' domain probabilities cover ${total / width} residues, expected the sequence's ${length}`);
  }
  const joined = new Float64Array(total);
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}
