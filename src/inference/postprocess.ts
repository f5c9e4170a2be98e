import type { LanguageModelScores, Prediction, ScoredGoTerm, ScoredLabel } from '../contracts/prediction';
import { scoreLanguageModel } from './language-model';
import type { GoHead, ModelPackage, MultiLabelHead } from './manifest';
import { poolMax, poolWeightedMean, sumLanguageModelScores } from './pooling';
import type { OutputTensor } from './protocol';
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
}

/**
 * Reads the raw outputs of one batch into one WindowScores per row. `encoded` are the batch's
 * windows as packed, so `encoded[row]` pairs with output row `row`. Throws when an output's shape
 * does not match the batch and the manifest.
 */
export function readWindowScores(
  context: PostprocessContext,
  outputs: Record<string, OutputTensor>,
  encoded: readonly EncodedWindow[],
  seqLength: number,
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
 * The language model scores are summed, since each residue is scored by one window only.
 */
export function buildPrediction(
  context: PostprocessContext,
  windows: readonly SequenceWindow[],
  scores: readonly WindowScores[],
  length: number,
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
  return prediction;
}
