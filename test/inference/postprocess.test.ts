import fc from 'fast-check';
import { logSoftmaxAt, scoreLanguageModel } from '../../src/inference/language-model';
import type { Manifest, ModelPackage } from '../../src/inference/manifest';
import { buildPrediction, createPostprocessContext, rankLabels, readWindowScores, sigmoid } from '../../src/inference/postprocess';
import type { OutputTensor } from '../../src/inference/protocol';
import { Tokenizer } from '../../src/inference/tokenizer';
import { buildAncestorIndex, propagateTruePath } from '../../src/inference/true-path';
import { planWindows } from '../../src/inference/windows';
import { makeManifest } from './fixtures';

function logit(probability: number): number {
  return Math.log(probability / (1 - probability));
}

function fixturePackage(): ModelPackage {
  const manifest = makeManifest();
  return { dir: '/models/fixture', manifest, onnxPath: '/models/fixture/model.onnx', modelId: manifest.modelId };
}

describe('sigmoid', () => {
  test('maps 0 to one half', () => {
    expect(sigmoid(0)).toBe(0.5);
  });

  test('stays finite at extreme logits', () => {
    expect(sigmoid(-1000)).toBe(0);
    expect(sigmoid(1000)).toBe(1);
    expect(sigmoid(logit(0.8))).toBeCloseTo(0.8, 12);
  });
});

describe('rankLabels', () => {
  const scored = [0.2, 0.9, 0.5, 0.7, 0.1, 0.6, 0.3].map((score, i) => ({ label: `L${i}`, score }));
  const thresholds = [0.1, 0.95, 0.5, 0.8, 0.5, 0.5, 0.5];

  test('predicts labels at or above their threshold', () => {
    const { predicted } = rankLabels(scored, thresholds);
    expect(predicted.map((item) => item.label)).toEqual(['L5', 'L2', 'L0']);
  });

  test('lists the best five whatever the threshold', () => {
    const { top } = rankLabels(scored, thresholds);
    expect(top.map((item) => item.label)).toEqual(['L1', 'L3', 'L5', 'L2', 'L6']);
  });

  test('keeps label order for equal scores', () => {
    const tied = [0.5, 0.5, 0.5].map((score, i) => ({ label: `T${i}`, score }));
    expect(rankLabels(tied, [0, 0, 0]).top.map((item) => item.label)).toEqual(['T0', 'T1', 'T2']);
  });
});

describe('true-path rule', () => {
  const labels = ['GO:0000001', 'GO:0000002', 'GO:0000003', 'GO:0000004'];
  const parents = makeManifest().goGraph.parents;

  test('finds ancestors through unlabelled terms', () => {
    expect(buildAncestorIndex(labels, parents)).toEqual([[], [0], [], [0, 1]]);
  });

  test('raises ancestors to the best descendant', () => {
    const ancestors = buildAncestorIndex(labels, parents);
    expect(propagateTruePath([0.1, 0.2, 0.3, 0.9], ancestors)).toEqual([0.9, 0.9, 0.3, 0.9]);
  });

  test('leaves consistent scores unchanged', () => {
    const ancestors = buildAncestorIndex(labels, parents);
    expect(propagateTruePath([0.9, 0.5, 0.3, 0.4], ancestors)).toEqual([0.9, 0.5, 0.3, 0.4]);
  });

  test('stops at a cycle in the graph', () => {
    const cyclic = { 'GO:0000001': ['GO:0000002'], 'GO:0000002': ['GO:0000001'] };
    expect(buildAncestorIndex(['GO:0000001', 'GO:0000002'], cyclic)).toEqual([[1], [0]]);
  });

  test('no term scores above an ancestor', () => {
    // Random DAGs: a term's parents always have a smaller index, so there is no cycle.
    const dagWithScores = fc.integer({ min: 1, max: 12 }).chain((size) =>
      fc.record({
        parentLists: fc.tuple(
          ...Array.from({ length: size }, (_, term) =>
            fc.uniqueArray(fc.integer({ min: 0, max: Math.max(term - 1, 0) }), { maxLength: term === 0 ? 0 : 3 }),
          ),
        ),
        scores: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: size, maxLength: size }),
      }),
    );

    fc.assert(
      fc.property(dagWithScores, ({ parentLists, scores }) => {
        const termLabels = scores.map((_, i) => `GO:${String(i).padStart(7, '0')}`);
        const graph: Record<string, string[]> = {};
        parentLists.forEach((list, term) => {
          graph[termLabels[term]] = list.map((parent) => termLabels[parent]);
        });

        const ancestors = buildAncestorIndex(termLabels, graph);
        const propagated = propagateTruePath(scores, ancestors);

        ancestors.forEach((ancestorIndices, term) => {
          expect(propagated[term]).toBeGreaterThanOrEqual(scores[term]);
          for (const ancestor of ancestorIndices) {
            expect(propagated[ancestor]).toBeGreaterThanOrEqual(propagated[term]);
          }
        });
        expect(propagateTruePath(propagated, ancestors)).toEqual(propagated);
      }),
    );
  });
});

describe('language model scores', () => {
  test('matches a hand-computed log-likelihood', () => {
    // Vocabulary of 6 tokens. The sequence "AC" is [<bos>, A, C] = [1, 4, 5].
    // Row 0 is uniform, so ln p(A) = ln(1/6). Row 1 gives C weight 5 against 5 × 1, so ln p(C) = ln(1/2).
    // Row 2 would predict the token after C and is not scored.
    const vocabSize = 6;
    const logits = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, Math.log(5), 9, 9, 9, 9, 9, 9];
    const scores = scoreLanguageModel(logits, vocabSize, [1, 4, 5], 1, 2);

    expect(scores.scoredResidues).toBe(2);
    expect(scores.logLikelihood).toBeCloseTo(-Math.log(12), 12);
    expect(scores.perplexity).toBeCloseTo(Math.sqrt(12), 12);
  });

  test('skips a first residue with no <bos> before it', () => {
    const logits = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const scores = scoreLanguageModel(logits, 6, [4, 5], 0, 2);

    expect(scores.scoredResidues).toBe(1);
    expect(scores.logLikelihood).toBeCloseTo(-Math.log(6), 12);
  });

  test('starts at firstScoredResidue', () => {
    // Same rows as above: skipping the first residue leaves only ln p(C) = ln(1/2).
    const logits = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, Math.log(5), 9, 9, 9, 9, 9, 9];
    const scores = scoreLanguageModel(logits, 6, [1, 4, 5], 1, 2, 1);

    expect(scores.scoredResidues).toBe(1);
    expect(scores.logLikelihood).toBeCloseTo(-Math.log(2), 12);
  });

  test('stays finite for large logits', () => {
    expect(logSoftmaxAt([1000, 0, -1000], 0, 3, 0)).toBeCloseTo(0, 12);
    expect(logSoftmaxAt([1000, 0, -1000], 0, 3, 1)).toBeCloseTo(-1000, 6);
  });
});

describe('readWindowScores and buildPrediction', () => {
  const pkg = fixturePackage();
  const context = createPostprocessContext(pkg);
  const tokenizer = new Tokenizer(pkg.manifest.tokenizer);
  const vocabSize = pkg.manifest.tokenizer.vocab.length;

  function tensor(dims: number[], values?: number[]): OutputTensor {
    const size = dims.reduce((product, dim) => product * dim, 1);
    return { dims, data: Float32Array.from(values ?? new Array<number>(size).fill(0)) };
  }

  function outputsFor(seqLength: number, goProbabilities: number[]): Record<string, OutputTensor> {
    return {
      localization_logits: tensor([1, 3], [logit(0.7), logit(0.2), logit(0.85)]),
      go_logits: tensor([1, 4], goProbabilities.map(logit)),
      lm_logits: tensor([1, seqLength, vocabSize]),
    };
  }

  /** Predicts a sequence that fits one window from one row of outputs. */
  function predictOne(residues: string, outputs: Record<string, OutputTensor>, seqLength: number) {
    const windows = planWindows(residues.length, tokenizer.maxResidues, 7);
    const encoded = windows.map((window) => tokenizer.encodeWindow(residues, window));
    const scores = readWindowScores(context, outputs, encoded, seqLength);
    return buildPrediction(context, windows, scores, residues.length);
  }

  test('builds every head from the logits', () => {
    const prediction = predictOne('MKV', outputsFor(4, [0.1, 0.2, 0.6, 0.8]), 4);

    expect(prediction.modelId).toBe(pkg.modelId);
    expect(prediction.localization.predicted.map((item) => item.label)).toEqual(['nucleus']);
    expect(prediction.localization.top.map((item) => item.label)).toEqual(['extracellular', 'nucleus', 'cytoplasm']);
    expect(prediction.localization.top[0].score).toBeCloseTo(0.85, 6);
    expect(prediction.function).toBeUndefined();
    expect(prediction.lm.scoredResidues).toBe(3);
    expect(prediction.lm.perplexity).toBeCloseTo(vocabSize, 3);
    expect(prediction.residuesUsed).toBe(3);
    expect(prediction.truncated).toBe(false);
    expect(prediction.windows).toBe(1);
  });

  test('reports GO terms after propagation', () => {
    const prediction = predictOne('MKV', outputsFor(4, [0.1, 0.2, 0.6, 0.8]), 4);
    const predicted = prediction.go.predicted;

    expect(predicted.map((term) => term.label)).toEqual(['GO:0000001', 'GO:0000002', 'GO:0000004', 'GO:0000003']);
    expect(predicted[0].score).toBeCloseTo(0.8, 6);
    expect(predicted[0].name).toBe('root term');
    expect(predicted[0].aspect).toBe('F');
    expect(predicted[3].aspect).toBe('P');
  });

  test('reads a full window whole', () => {
    const prediction = predictOne('M'.repeat(15), outputsFor(16, [0.5, 0.5, 0.5, 0.5]), 16);

    expect(prediction.windows).toBe(1);
    expect(prediction.residuesUsed).toBe(15);
    expect(prediction.lm.scoredResidues).toBe(15);
    expect(prediction.truncated).toBe(false);
  });

  test('marks residues outside every window as truncated', () => {
    const encoded = tokenizer.encodeWindow('M'.repeat(20), { start: 0, end: 15, scoredStart: 0 });
    const scores = readWindowScores(context, outputsFor(16, [0.5, 0.5, 0.5, 0.5]), [encoded], 16);
    const prediction = buildPrediction(context, [{ start: 0, end: 15, scoredStart: 0 }], scores, 20);

    expect(prediction.truncated).toBe(true);
    expect(prediction.residuesUsed).toBe(15);
  });

  test('rejects an output of the wrong shape', () => {
    const encoded = tokenizer.encodeWindow('MKV', { start: 0, end: 3, scoredStart: 0 });
    const outputs = { ...outputsFor(4, [0.5, 0.5, 0.5, 0.5]), go_logits: tensor([1, 5]) };

    expect(() => readWindowScores(context, outputs, [encoded], 4)).toThrow(
      'model output "go_logits" has shape [1, 5], expected [1, 4]',
    );
  });

  test('rejects a missing output', () => {
    const encoded = tokenizer.encodeWindow('MKV', { start: 0, end: 3, scoredStart: 0 });
    const outputs = outputsFor(4, [0.5, 0.5, 0.5, 0.5]);
    delete outputs.lm_logits;

    expect(() => readWindowScores(context, outputs, [encoded], 4)).toThrow('model output "lm_logits" is missing');
  });

  test('rejects scores that do not match the windows', () => {
    const windows = planWindows(20, 15, 7);
    expect(() => buildPrediction(context, windows, [], 20)).toThrow('got 0 rows for 2 windows');
  });
});

describe('buildPrediction with a domain lookahead', () => {
  const base = makeManifest();
  const manifest: Manifest = {
    ...base,
    heads: {
      ...base.heads,
      domain: {
        output: 'domain_logits',
        type: 'residue_spans',
        labels: ['Kinase'],
        accessions: ['PF00001.1'],
        descriptions: ['kinase domain'],
        thresholds: [0.5],
        minLength: 3,
        maxGap: 0,
        lookahead: 2,
      },
    },
  };
  const context = createPostprocessContext({ dir: '/models/fixture', manifest, onnxPath: '/models/fixture/model.onnx', modelId: manifest.modelId });
  const tokenizer = new Tokenizer(manifest.tokenizer);
  const vocabSize = manifest.tokenizer.vocab.length;
  const seqLength = 16;

  /**
   * Runs `residues` through fake outputs whose domain head reports the family (logit +4 against
   * -4) at the positions of the residues in `marked` (0-based, in sequence coordinates) in every
   * window, and "no domain" elsewhere.
   */
  function predictMarked(residues: string, marked: Set<number>) {
    const windows = planWindows(residues.length, tokenizer.maxResidues, 7);
    const encoded = windows.map((window) => tokenizer.encodeWindow(residues, window));
    const rows = windows.length;
    const domain = new Float32Array(rows * seqLength * 2);
    windows.forEach((window, row) => {
      for (let residue = window.start; residue < window.end; residue++) {
        const position = encoded[row].firstResidueIndex + residue - window.start;
        const offset = (row * seqLength + position) * 2;
        domain[offset] = marked.has(residue) ? -4 : 4;
        domain[offset + 1] = marked.has(residue) ? 4 : -4;
      }
    });
    const outputs: Record<string, OutputTensor> = {
      localization_logits: { dims: [rows, 3], data: new Float32Array(rows * 3) },
      go_logits: { dims: [rows, 4], data: new Float32Array(rows * 4) },
      lm_logits: { dims: [rows, seqLength, vocabSize], data: new Float32Array(rows * seqLength * vocabSize) },
      domain_logits: { dims: [rows, seqLength, 2], data: domain },
    };
    const scores = readWindowScores(context, outputs, encoded, seqLength, encoded.map(() => true));
    return buildPrediction(context, windows, scores, residues.length, { residues: true });
  }

  test('span moves back by the lookahead', () => {
    const prediction = predictMarked('M'.repeat(12), new Set([5, 6, 7, 8, 9]));

    // The head marks residues 6-10 (1-based), which classify residues 4-8.
    expect(prediction.domains?.predicted.map((span) => [span.start, span.end])).toEqual([[4, 8]]);
  });

  test('per-residue probabilities move back by the lookahead', () => {
    const prediction = predictMarked('M'.repeat(12), new Set([5]));
    const family = (prediction.residues?.domain ?? []).map((row) => row[1] > 0.5);

    expect(family.map((inside, residue) => (inside ? residue : -1)).filter((residue) => residue >= 0)).toEqual([3]);
  });

  test('last residues take the last position', () => {
    const prediction = predictMarked('M'.repeat(12), new Set([11]));
    const family = (prediction.residues?.domain ?? []).map((row) => row[1] > 0.5);

    expect(family.slice(8)).toEqual([false, true, true, true]);
  });

  test('span crosses a window border', () => {
    // 20 residues: window 0 scores residues 0-14, window 1 (from residue 5) scores 15-19.
    const prediction = predictMarked('M'.repeat(20), new Set([14, 15, 16, 17, 18]));

    expect(prediction.windows).toBe(2);
    expect(prediction.domains?.predicted.map((span) => [span.start, span.end])).toEqual([[13, 17]]);
  });
});
