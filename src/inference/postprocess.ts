import type { Prediction, ScoredGoTerm, ScoredLabel } from '../contracts/prediction';
import { scoreLanguageModel } from './language-model';
import type { GoHead, ModelPackage, MultiLabelHead } from './manifest';
import type { OutputTensor } from './protocol';
import type { EncodedSequence } from './tokenizer';
import { buildAncestorIndex, propagateTruePath } from './true-path';

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

function scoreRow(tensor: OutputTensor, row: number, width: number): number[] {
  return Array.from(tensor.data.subarray(row * width, (row + 1) * width), sigmoid);
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

/**
 * Turns the raw outputs of one batch into one Prediction per sequence, in batch row order.
 * `encoded` are the batch's sequences as packed, so `encoded[row]` pairs with output row `row`.
 * Throws when an output's shape does not match the batch and the manifest.
 */
export function buildPredictions(
  context: PostprocessContext,
  outputs: Record<string, OutputTensor>,
  encoded: readonly EncodedSequence[],
  seqLength: number,
): Prediction[] {
  const { manifest, modelId } = context.pkg;
  const { heads } = manifest;
  const batchSize = encoded.length;
  const vocabSize = manifest.tokenizer.vocab.length;

  const localization = checkedOutput(outputs, heads.localization.output, batchSize, [heads.localization.labels.length]);
  const go = checkedOutput(outputs, heads.go.output, batchSize, [heads.go.labels.length]);
  const lm = checkedOutput(outputs, heads.lm.output, batchSize, [seqLength, vocabSize]);
  const functionHead = heads.function;
  const functionOutput = functionHead
    ? checkedOutput(outputs, functionHead.output, batchSize, [functionHead.labels.length])
    : undefined;

  return encoded.map((sequence, row) => {
    const goScores = propagateTruePath(scoreRow(go, row, heads.go.labels.length), context.goAncestors);
    const lmRows = lm.data.subarray(row * seqLength * vocabSize, (row + 1) * seqLength * vocabSize);
    const prediction: Prediction = {
      modelId,
      localization: multiLabelResult(heads.localization, scoreRow(localization, row, heads.localization.labels.length)),
      go: goResult(heads.go, goScores),
      lm: scoreLanguageModel(lmRows, vocabSize, sequence.ids, sequence.firstResidueIndex, sequence.residuesUsed),
      residuesUsed: sequence.residuesUsed,
      truncated: sequence.truncated,
    };
    if (functionHead && functionOutput) {
      prediction.function = multiLabelResult(functionHead, scoreRow(functionOutput, row, functionHead.labels.length));
    }
    return prediction;
  });
}
