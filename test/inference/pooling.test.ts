import fc from 'fast-check';
import type { ModelPackage } from '../../src/inference/manifest';
import { poolMax, poolWeightedMean, sumLanguageModelScores } from '../../src/inference/pooling';
import { buildPrediction, createPostprocessContext, readWindowScores, sigmoid } from '../../src/inference/postprocess';
import type { OutputTensor } from '../../src/inference/protocol';
import { Tokenizer } from '../../src/inference/tokenizer';
import { buildAncestorIndex } from '../../src/inference/true-path';
import { planWindows, type SequenceWindow } from '../../src/inference/windows';
import { makeManifest } from './fixtures';

const RESIDUE_LETTERS = 'ACDEFGHIKLMNPQRSTVWY';

/** Head logits of one window, per head, in label order. */
interface WindowLogits {
  localization: number[];
  go: number[];
  function: number[];
}

/** The fixture manifest with a two-label function head, so that every head can be pooled. */
function fixturePackage(): ModelPackage {
  const manifest = makeManifest();
  manifest.heads.function = {
    output: 'function_logits',
    type: 'multi_label',
    labels: ['hydrolase', 'transferase'],
    thresholds: [0.5, 0.5],
  };
  return { dir: '/models/fixture', manifest, onnxPath: '/models/fixture/model.onnx', modelId: manifest.modelId };
}

const pkg = fixturePackage();
const context = createPostprocessContext(pkg);
const tokenizer = new Tokenizer(pkg.manifest.tokenizer);
const vocabSize = pkg.manifest.tokenizer.vocab.length;

/** Logit of the true next residue at absolute residue `index`; the other tokens get 0. */
function targetLogit(index: number): number {
  return (index % 7) - 3;
}

/** ln p of the true residue at `index` under the rows that windowOutputs builds. */
function targetLogProbability(index: number): number {
  const logit = targetLogit(index);
  return logit - Math.log(Math.exp(logit) + vocabSize - 1);
}

/**
 * Builds one batch of raw outputs for the windows of `residues`: head logits from `logitsFor`, and
 * LM rows whose true next token has logit targetLogit(absolute residue index).
 */
function windowOutputs(
  residues: string,
  windows: readonly SequenceWindow[],
  logitsFor: (window: number) => WindowLogits,
): { outputs: Record<string, OutputTensor>; seqLength: number } {
  const encoded = windows.map((window) => tokenizer.encodeWindow(residues, window));
  const seqLength = Math.max(...encoded.map((window) => window.ids.length));
  const lm = new Float32Array(windows.length * seqLength * vocabSize);

  encoded.forEach((window, row) => {
    for (let offset = 0; offset < window.residueCount; offset++) {
      const position = window.firstResidueIndex + offset;
      if (position === 0) continue;
      const rowStart = (row * seqLength + position - 1) * vocabSize;
      lm[rowStart + window.ids[position]] = targetLogit(windows[row].start + offset);
    }
  });

  const logits = windows.map((_, window) => logitsFor(window));
  const outputs: Record<string, OutputTensor> = {
    localization_logits: { dims: [windows.length, 3], data: Float32Array.from(logits.flatMap((row) => row.localization)) },
    go_logits: { dims: [windows.length, 4], data: Float32Array.from(logits.flatMap((row) => row.go)) },
    function_logits: { dims: [windows.length, 2], data: Float32Array.from(logits.flatMap((row) => row.function)) },
    lm_logits: { dims: [windows.length, seqLength, vocabSize], data: lm },
  };
  return { outputs, seqLength };
}

function predictWindowed(residues: string, overlap: number, logitsFor: (window: number) => WindowLogits) {
  const windows = planWindows(residues.length, tokenizer.maxResidues, overlap);
  const { outputs, seqLength } = windowOutputs(residues, windows, logitsFor);
  const encoded = windows.map((window) => tokenizer.encodeWindow(residues, window));
  const scores = readWindowScores(context, outputs, encoded, seqLength);
  return { windows, prediction: buildPrediction(context, windows, scores, residues.length) };
}

function residuesOf(length: number): string {
  return Array.from({ length }, (_, i) => RESIDUE_LETTERS[(i * 7) % RESIDUE_LETTERS.length]).join('');
}

function scoreOf(items: ReadonlyArray<{ label: string; score: number }>, label: string): number {
  const item = items.find((candidate) => candidate.label === label);
  if (!item) throw new Error(`label ${label} is not listed`);
  return item.score;
}

const flatLogits: WindowLogits = { localization: [0, 0, 0], go: [0, 0, 0, 0], function: [0, 0] };

describe('pooling functions', () => {
  test('weights the mean by window', () => {
    expect(poolWeightedMean([[0, 4], [3, 1]], [2, 1])).toEqual([1, 3]);
  });

  test('returns a single window unchanged', () => {
    const row = Float32Array.from([0.1, -2.7]);
    expect(poolWeightedMean([row], [5])).toEqual(Array.from(row));
    expect(poolMax([row])).toEqual(Array.from(row));
  });

  test('takes the maximum per label', () => {
    expect(poolMax([[0, 4, -1], [3, 1, -2]])).toEqual([3, 4, -1]);
  });

  test('rejects zero windows or weights', () => {
    expect(() => poolMax([])).toThrow('cannot pool zero windows');
    expect(() => poolWeightedMean([[1], [2]], [0, 0])).toThrow('window weights sum to 0');
  });

  test('sums language model scores', () => {
    const sum = sumLanguageModelScores([
      { logLikelihood: -2, perplexity: Math.exp(1), scoredResidues: 2 },
      { logLikelihood: -4, perplexity: Math.exp(2), scoredResidues: 2 },
    ]);
    expect(sum.logLikelihood).toBe(-6);
    expect(sum.scoredResidues).toBe(4);
    expect(sum.perplexity).toBeCloseTo(Math.exp(1.5), 12);
  });
});

describe('windowed predictions', () => {
  test('score each residue exactly once', () => {
    const cases = fc.record({
      length: fc.integer({ min: 1, max: 200 }),
      overlap: fc.integer({ min: 0, max: tokenizer.maxResidues - 1 }),
    });

    fc.assert(
      fc.property(cases, ({ length, overlap }) => {
        const { windows, prediction } = predictWindowed(residuesOf(length), overlap, () => flatLogits);
        let expected = 0;
        for (let index = 0; index < length; index++) expected += targetLogProbability(index);

        expect(prediction.lm.scoredResidues).toBe(length);
        expect(prediction.lm.logLikelihood).toBeCloseTo(expected, 3);
        expect(prediction.lm.perplexity).toBeCloseTo(Math.exp(-expected / length), 3);
        expect(prediction.residuesUsed).toBe(length);
        expect(prediction.truncated).toBe(false);
        expect(prediction.windows).toBe(windows.length);
      }),
    );
  });

  test('average localization by scored residues', () => {
    // 20 residues in windows of 15 with overlap 7: [0, 15) scores 15 residues, [5, 20) scores 5.
    const { windows, prediction } = predictWindowed(residuesOf(20), 7, (window) => ({
      ...flatLogits,
      localization: window === 0 ? [2, -1, 0] : [-2, 3, 0],
    }));

    expect(windows.map((window) => window.end - window.scoredStart)).toEqual([15, 5]);
    expect(scoreOf(prediction.localization.top, 'nucleus')).toBeCloseTo(sigmoid((15 * 2 + 5 * -2) / 20), 6);
    expect(scoreOf(prediction.localization.top, 'cytoplasm')).toBeCloseTo(sigmoid((15 * -1 + 5 * 3) / 20), 6);
  });

  test('take the best window for function', () => {
    const { prediction } = predictWindowed(residuesOf(40), 4, (window) => ({
      ...flatLogits,
      function: window === 2 ? [3, -3] : [-1, -1],
    }));

    expect(prediction.windows).toBe(4);
    expect(prediction.function!.predicted.map((item) => item.label)).toEqual(['hydrolase']);
    expect(scoreOf(prediction.function!.top, 'hydrolase')).toBeCloseTo(sigmoid(3), 6);
    expect(scoreOf(prediction.function!.top, 'transferase')).toBeCloseTo(sigmoid(-1), 6);
  });

  test('keep GO true-path consistency after pooling', () => {
    const labels = pkg.manifest.heads.go.labels;
    const ancestors = buildAncestorIndex(labels, pkg.manifest.goGraph.parents);
    const goRows = fc.array(fc.array(fc.double({ min: -8, max: 8, noNaN: true }), { minLength: 4, maxLength: 4 }), {
      minLength: 4,
      maxLength: 4,
    });

    fc.assert(
      fc.property(fc.integer({ min: 16, max: 60 }), goRows, (length, rows) => {
        const { windows, prediction } = predictWindowed(residuesOf(length), 5, (window) => ({
          ...flatLogits,
          go: rows[window % rows.length],
        }));
        const scores = labels.map((label) => scoreOf(prediction.go.top, label));

        ancestors.forEach((ancestorIndices, term) => {
          const best = Math.max(...windows.map((_, window) => sigmoid(rows[window % rows.length][term])));
          expect(scores[term]).toBeGreaterThanOrEqual(best - 1e-6);
          for (const ancestor of ancestorIndices) expect(scores[ancestor]).toBeGreaterThanOrEqual(scores[term]);
        });
      }),
    );
  });

  test('leave one full window unpooled', () => {
    const logits: WindowLogits = { localization: [0.3, -1.2, 2.5], go: [-1, 0.5, 1.5, 2], function: [0.7, -0.4] };
    const { prediction } = predictWindowed(residuesOf(15), 7, () => logits);
    const expectedGo = [2, 2, 2, 1.5].map((value) => sigmoid(Math.fround(value)));

    expect(prediction.windows).toBe(1);
    expect(prediction.localization.top.map((item) => item.score)).toEqual(
      [2.5, 0.3, -1.2].map((value) => sigmoid(Math.fround(value))),
    );
    expect(prediction.go.top.map((item) => item.score)).toEqual(expectedGo);
  });
});
