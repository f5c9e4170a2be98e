import { existsSync } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { bundledModelDir } from '../../src/config/load';
import type { Prediction } from '../../src/contracts/prediction';
import { DEFAULT_CHUNK_TOKENS, DEFAULT_MAX_BATCH_TOKENS, InferenceEngine, type InferenceEngineOptions } from '../../src/inference/engine';
import { GFP_AEQVI, INSULIN_HUMAN, LYSOZYME_CHICK, UBIQUITIN_HUMAN } from '../support/proteins';

// BITNET_EDGE_TEST_MODEL_DIR runs these tests against another model package.
const modelDir = process.env.BITNET_EDGE_TEST_MODEL_DIR || bundledModelDir();
const describeWithModel = existsSync(path.join(modelDir, 'manifest.json')) ? describe : describe.skip;

/**
 * Largest accepted difference between a window read in one run and read in parts. The parts get
 * the same tokens and the same keys and values, so only the order of float32 sums can differ.
 * Over the 500 benchmark proteins the largest pooled score difference was 1.9e-7, and the
 * per-residue probabilities (4 significant digits) were equal. Scores are probabilities in
 * [0, 1]. The log-likelihood tolerance is per residue, and the raw-logit one applies to runTokens.
 */
const SCORE_TOLERANCE = 1e-4;
const LOG_LIKELIHOOD_TOLERANCE_PER_RESIDUE = 1e-4;
const LOGIT_TOLERANCE = 1e-3;

/** 1,300 residues of real proteins end to end: three windows of up to 511 residues. */
const LONG_PROTEIN = [GFP_AEQVI, LYSOZYME_CHICK, INSULIN_HUMAN, UBIQUITIN_HUMAN].join('').repeat(3).slice(0, 1300);

const SEQUENCES = [UBIQUITIN_HUMAN, GFP_AEQVI, LYSOZYME_CHICK.repeat(2), LONG_PROTEIN, GFP_AEQVI.slice(0, 129)];

function engineOptions(overrides: Partial<InferenceEngineOptions>): InferenceEngineOptions {
  return { modelDir, intraOpThreads: 1, logger: pino({ level: 'silent' }), ...overrides };
}

/** Collects every label score of a prediction's pooled heads, keyed by head and label. */
function pooledScores(prediction: Prediction): Map<string, number> {
  const scores = new Map<string, number>();
  const heads = { localization: prediction.localization, go: prediction.go, function: prediction.function };
  for (const [name, head] of Object.entries(heads)) {
    for (const item of [...(head?.top ?? []), ...(head?.predicted ?? [])]) scores.set(`${name}:${item.label}`, item.score);
  }
  return scores;
}

function largestDifference(a: ReadonlyArray<number | null>, b: ReadonlyArray<number | null>): number {
  expect(a).toHaveLength(b.length);
  return a.reduce<number>((largest, value, index) => Math.max(largest, Math.abs((value ?? 0) - (b[index] ?? 0))), 0);
}

describeWithModel('windows read in parts', () => {
  let whole: InferenceEngine;
  let inParts: InferenceEngine;
  let inShortParts: InferenceEngine;

  beforeAll(async () => {
    whole = new InferenceEngine(engineOptions({ chunkTokens: 0 }));
    inParts = new InferenceEngine(engineOptions({}));
    inShortParts = new InferenceEngine(engineOptions({ chunkTokens: 37 }));
    await Promise.all([whole.start(), inParts.start(), inShortParts.start()]);
  });

  afterAll(async () => {
    await Promise.all([whole.stop(), inParts.stop(), inShortParts.stop()]);
  });

  test('the bundled model reads windows longer than a part in parts by default', () => {
    expect(inParts.manifest.prefixCache).toBeDefined();
    expect(DEFAULT_CHUNK_TOKENS).toBeLessThan(inParts.maxResidues);
  });

  test.each([
    ['default parts', () => inParts],
    ['parts of 37 tokens', () => inShortParts],
  ])('%s give the predictions of one run per window', async (_name, engine) => {
    const options = SEQUENCES.map(() => ({ residues: true }));
    const expected = await whole.predict(SEQUENCES, options);
    const actual = await engine().predict(SEQUENCES, options);

    actual.forEach((prediction, index) => {
      const reference = expected[index];
      expect(prediction.windows).toBe(reference.windows);
      expect(prediction.localization.predicted.map((item) => item.label)).toEqual(reference.localization.predicted.map((item) => item.label));

      const referenceScores = pooledScores(reference);
      for (const [key, score] of pooledScores(prediction)) {
        if (referenceScores.has(key)) expect(Math.abs(score - referenceScores.get(key)!)).toBeLessThan(SCORE_TOLERANCE);
      }
      const length = SEQUENCES[index].length;
      expect(Math.abs(prediction.lm.logLikelihood - reference.lm.logLikelihood)).toBeLessThan(length * LOG_LIKELIHOOD_TOLERANCE_PER_RESIDUE);
      expect(largestDifference(prediction.residues!.observed, reference.residues!.observed)).toBeLessThan(SCORE_TOLERANCE);
      const domainRows = (result: Prediction) => (result.residues!.domain ?? []).flat();
      expect(largestDifference(domainRows(prediction), domainRows(reference))).toBeLessThan(SCORE_TOLERANCE);
    });
  });

  test('a window longer than a part runs alone; shorter ones share a run', async () => {
    const before = inParts.stats;
    await inParts.predict([UBIQUITIN_HUMAN, INSULIN_HUMAN, GFP_AEQVI, LYSOZYME_CHICK.repeat(2)]);
    const after = inParts.stats;

    // Ubiquitin (76) and insulin (110) fit in one part and one run; GFP (238) and the lysozyme dimer (294) run alone.
    expect(after.windows - before.windows).toBe(4);
    expect(after.batches - before.batches).toBe(3);
  });

  test('without parts, long windows of several sequences share a run', async () => {
    const before = whole.stats;
    await whole.predict([GFP_AEQVI, LYSOZYME_CHICK.repeat(2), GFP_AEQVI.slice(1)]);
    const after = whole.stats;

    expect(DEFAULT_MAX_BATCH_TOKENS).toBeGreaterThanOrEqual(3 * 296);
    expect(after.batches - before.batches).toBe(1);
  });

  test('runTokens in parts returns the one-run outputs and present state', async () => {
    const rows = [Array.from(GFP_AEQVI, (_, i) => 4 + (i % 20)), Array.from(GFP_AEQVI, (_, i) => 4 + ((i * 7) % 20))];
    const expected = await whole.runTokens(rows);
    const actual = await inShortParts.runTokens(rows);

    expect(actual.present?.length).toBe(GFP_AEQVI.length);
    for (const [name, output] of Object.entries(expected.outputs)) {
      expect(actual.outputs[name]?.dims).toEqual(output.dims);
      expect(largestDifference(Array.from(actual.outputs[name].data), Array.from(output.data))).toBeLessThan(LOGIT_TOLERANCE);
    }
    expect(largestDifference(Array.from(actual.present!.keys[0]), Array.from(expected.present!.keys[0]))).toBeLessThan(LOGIT_TOLERANCE);
  });

  test('a shared one-row past gives the outputs of the past repeated per row', async () => {
    const prefix = Array.from(GFP_AEQVI.slice(0, 40), (_, i) => 4 + (i % 20));
    const rows = [0, 1, 2].map((shift) => Array.from({ length: 20 }, (_, i) => 4 + ((i + shift) % 20)));
    const single = await inParts.runTokens([[1, ...prefix]]);
    const repeated = await inParts.runTokens([[1, ...prefix], [1, ...prefix], [1, ...prefix]]);

    const shared = await inParts.runTokens(rows, single.present!, { present: false, sharedPast: true });
    const tiled = await inParts.runTokens(rows, repeated.present!, { present: false });

    for (const [name, output] of Object.entries(tiled.outputs)) {
      expect(shared.outputs[name].dims).toEqual(output.dims);
      expect(largestDifference(Array.from(shared.outputs[name].data), Array.from(output.data))).toBeLessThan(LOGIT_TOLERANCE);
    }
  });
});
