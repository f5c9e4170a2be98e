import { readFileSync } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import type { Prediction } from '../../src/contracts/prediction';
import { InferenceEngine } from '../../src/inference/engine';
import type { OutputTensor } from '../../src/inference/protocol';
import { maxAbsDifference, type ReferenceFile } from '../../src/inference/reference';
import { GFP_AEQVI, INSULIN_HUMAN, LYSOZYME_CHICK, UBIQUITIN_HUMAN } from '../support/proteins';

/** A two-layer model in the format with a domain head and prefix-cache inputs (its metrics are meaningless). */
const SMOKE_MODEL_DIR = path.join(__dirname, '..', 'fixtures', 'model-smoke');

/** 700 residues of real proteins end to end: two windows of 511, the second scoring residues 511 to 699. */
const TWO_WINDOW_PROTEIN = [GFP_AEQVI, LYSOZYME_CHICK, INSULIN_HUMAN, UBIQUITIN_HUMAN, GFP_AEQVI, LYSOZYME_CHICK].join('').slice(0, 700);

function readReference(): ReferenceFile {
  return JSON.parse(readFileSync(path.join(SMOKE_MODEL_DIR, 'reference.json'), 'utf8')) as ReferenceFile;
}

function residuesOf(prediction: Prediction) {
  if (!prediction.residues) throw new Error('prediction has no per-residue output');
  return prediction.residues;
}

describe('smoke model with domain head and prefix cache', () => {
  let engine: InferenceEngine;

  beforeAll(async () => {
    engine = new InferenceEngine({ modelDir: SMOKE_MODEL_DIR, intraOpThreads: 1, logger: pino({ level: 'silent' }) });
    await engine.start();
  });

  afterAll(async () => {
    await engine.stop();
  });

  test('prediction lists domain spans inside the sequence', async () => {
    const [prediction] = await engine.predict([LYSOZYME_CHICK]);
    const families = engine.manifest.heads.domain?.labels ?? [];

    expect(prediction.domains).toBeDefined();
    for (const span of prediction.domains?.predicted ?? []) {
      expect(families).toContain(span.family);
      expect(span.start).toBeGreaterThanOrEqual(1);
      expect(span.end).toBeLessThanOrEqual(LYSOZYME_CHICK.length);
      expect(span.end - span.start + 1).toBeGreaterThanOrEqual(engine.manifest.heads.domain?.minLength ?? 1);
    }
  });

  test('no per-residue output without the option', async () => {
    const [prediction] = await engine.predict([UBIQUITIN_HUMAN]);

    expect(prediction.residues).toBeUndefined();
  });

  test('per-residue output has one row per residue', async () => {
    const [plain, detailed] = await engine.predict([UBIQUITIN_HUMAN, UBIQUITIN_HUMAN], [undefined, { residues: true }]);
    const residues = residuesOf(detailed);

    expect(residues.observed).toHaveLength(UBIQUITIN_HUMAN.length);
    expect(residues.nextResidue).toHaveLength(UBIQUITIN_HUMAN.length);
    expect(residues.domain).toHaveLength(UBIQUITIN_HUMAN.length);
    expect(residues.domainClasses).toEqual(['none', ...(engine.manifest.heads.domain?.labels ?? [])]);
    for (const row of residues.nextResidue) {
      expect(row).toHaveLength(20);
      expect(row!.reduce((sum, p) => sum + p, 0)).toBeCloseTo(1, 2);
    }
    for (const row of residues.domain ?? []) expect(row.reduce((sum, p) => sum + p, 0)).toBeCloseTo(1, 2);
    // Everything else equals the prediction without the option.
    expect({ ...detailed, residues: undefined }).toEqual({ ...plain, residues: undefined });
  });

  test('observed probabilities add up to the log-likelihood', async () => {
    const [prediction] = await engine.predict([TWO_WINDOW_PROTEIN], [{ residues: true }]);
    const observed = residuesOf(prediction).observed;
    const sumOfLogs = observed.reduce<number>((sum, p) => sum + Math.log(p ?? Number.NaN), 0);

    expect(prediction.windows).toBe(2);
    expect(observed).toHaveLength(TWO_WINDOW_PROTEIN.length);
    // Each probability is rounded to 4 significant digits, a relative error of at most 5e-4.
    expect(Math.abs(sumOfLogs - prediction.lm.logLikelihood)).toBeLessThan(TWO_WINDOW_PROTEIN.length * 5e-4);
  });

  test('second window rows match that window run alone', async () => {
    // The second window covers residues 189 to 699 and scores 511 to 699; run alone, the same
    // tokens give the same outputs, so its per-residue rows from offset 322 on must be equal.
    const windowStart = TWO_WINDOW_PROTEIN.length - engine.maxResidues;
    const [whole, alone] = await engine.predict([TWO_WINDOW_PROTEIN, TWO_WINDOW_PROTEIN.slice(windowStart)], [{ residues: true }, { residues: true }]);
    const scoredFrom = engine.maxResidues;

    expect(residuesOf(whole).domain?.slice(scoredFrom)).toEqual(residuesOf(alone).domain?.slice(scoredFrom - windowStart));
    expect(residuesOf(whole).observed.slice(scoredFrom)).toEqual(residuesOf(alone).observed.slice(scoredFrom - windowStart));
    // The first window's rows differ from the second window's for the residues both contain.
    expect(residuesOf(whole).observed.slice(windowStart, scoredFrom)).not.toEqual(residuesOf(alone).observed.slice(0, scoredFrom - windowStart));
  });

  test('prefix past gives the one-pass outputs', async () => {
    const [sequence] = readReference().sequences;
    const ids = sequence.inputIds;
    const split = Math.floor(ids.length / 2);

    const onePass = await engine.runTokens([ids]);
    const prefix = await engine.runTokens([ids.slice(0, split)]);
    const rest = await engine.runTokens([ids.slice(split)], prefix.present ?? undefined);
    const restAlone = await engine.runTokens([ids.slice(split)]);

    expect(prefix.present?.length).toBe(split);
    expect(rest.present?.length).toBe(ids.length);
    const localization = engine.manifest.heads.localization.output;
    const referenceLocalization = sequence.outputs[localization];
    expect(maxAbsDifference(referenceLocalization, requireOutput(onePass.outputs, localization), localization)).toBeLessThan(0.01);
    expect(maxAbsDifference(referenceLocalization, requireOutput(rest.outputs, localization), localization)).toBeLessThan(0.01);
    // Without the past the rest is read as a sequence of its own, and the pooled head changes.
    expect(maxAbsDifference(referenceLocalization, requireOutput(restAlone.outputs, localization), localization)).toBeGreaterThan(0.01);
  });
});

function requireOutput(outputs: Record<string, OutputTensor>, name: string): OutputTensor {
  const output = outputs[name];
  if (!output) throw new Error(`output ${name} missing`);
  return output;
}
