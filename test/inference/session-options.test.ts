import { existsSync } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { bundledModelDir } from '../../src/config/load';
import type { Prediction } from '../../src/contracts/prediction';
import { DEFAULT_SESSION_TUNING, InferenceEngine, type InferenceEngineOptions } from '../../src/inference/engine';
import { sessionOptions } from '../../src/inference/worker';
import { GFP_AEQVI, LYSOZYME_CHICK, UBIQUITIN_HUMAN } from '../support/proteins';

// BITNET_EDGE_TEST_MODEL_DIR runs these tests against another model package.
const modelDir = process.env.BITNET_EDGE_TEST_MODEL_DIR || bundledModelDir();
const describeWithModel = existsSync(path.join(modelDir, 'manifest.json')) ? describe : describe.skip;

function allScores(prediction: Prediction): number[] {
  const heads = [prediction.localization, prediction.go, ...(prediction.function ? [prediction.function] : [])];
  return heads.flatMap((head) => [...head.predicted, ...head.top].map((item) => item.score));
}

async function predictWith(overrides: Partial<InferenceEngineOptions>, sequences: string[]): Promise<Prediction[]> {
  const engine = new InferenceEngine({ modelDir, intraOpThreads: 1, logger: pino({ level: 'silent' }), ...overrides });
  await engine.start();
  try {
    return await engine.predict(sequences, sequences.map(() => ({ residues: true })));
  } finally {
    await engine.stop();
  }
}

function expectSamePredictions(actual: Prediction[], expected: Prediction[]): void {
  expect(actual).toHaveLength(expected.length);
  expected.forEach((prediction, index) => {
    const scores = allScores(actual[index]);
    allScores(prediction).forEach((score, i) => expect(scores[i]).toBeCloseTo(score, 4));
    expect(actual[index].lm.logLikelihood).toBeCloseTo(prediction.lm.logLikelihood, 2);

    const observed = actual[index].residues?.observed ?? [];
    const expectedObserved = prediction.residues?.observed ?? [];
    expect(observed).toHaveLength(expectedObserved.length);
    expectedObserved.forEach((probability, i) => expect(observed[i]).toBeCloseTo(probability ?? Number.NaN, 3));
  });
}

describe('worker session options', () => {
  test('spinning off sets both config entries', () => {
    const options = sessionOptions(2, { ...DEFAULT_SESSION_TUNING, allowSpinning: false });

    expect(options.intraOpNumThreads).toBe(2);
    expect(options.extra).toEqual({ session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } });
  });

  test('spinning on sets both config entries', () => {
    const options = sessionOptions(0, { ...DEFAULT_SESSION_TUNING, allowSpinning: true });

    expect(options.extra).toEqual({ session: { intra_op: { allow_spinning: '1' }, inter_op: { allow_spinning: '1' } } });
  });

  test('passes the arena settings', () => {
    const options = sessionOptions(1, { allowSpinning: false, cpuMemArena: false, memPattern: false });

    expect(options.enableCpuMemArena).toBe(false);
    expect(options.enableMemPattern).toBe(false);
    expect(options.graphOptimizationLevel).toBe('all');
  });
});

describeWithModel('engine session settings with the bundled model', () => {
  // 77, 148 and 239 tokens: padded to 128 and 256.
  const sequences = [UBIQUITIN_HUMAN, LYSOZYME_CHICK, GFP_AEQVI];
  let reference: Prediction[];

  beforeAll(async () => {
    reference = await predictWith({}, sequences);
  }, 60_000);

  test('fixed pad lengths keep the scores', async () => {
    const padded = await predictWith({ padLengths: [64, 128, 256, 512] }, sequences);

    expectSamePredictions(padded, reference);
  });

  test('spinning and arena settings keep the scores', async () => {
    const tuned = await predictWith({ intraOpThreads: 2, session: { allowSpinning: true, cpuMemArena: false, memPattern: false } }, sequences);

    expectSamePredictions(tuned, reference);
  });
});
