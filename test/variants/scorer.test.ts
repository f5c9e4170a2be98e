import path from 'node:path';
import pino from 'pino';
import { PrefixCache } from '../../src/cache/prefix-cache';
import { InferenceEngine } from '../../src/inference/engine';
import { VariantScorer, type ScanResult } from '../../src/variants/scorer';
import { allSingleSubstitutions, applyVariant, parseVariants, type Variant } from '../../src/variants/substitutions';
import { GFP_AEQVI, INSULIN_HUMAN, LYSOZYME_CHICK, UBIQUITIN_HUMAN } from '../support/proteins';

/** A two-layer model with prefix-cache inputs (its predictions are meaningless). */
const SMOKE_MODEL_DIR = path.join(__dirname, '..', 'fixtures', 'model-smoke');

/**
 * Largest accepted difference between an LLR computed after a cached past and one computed in
 * one pass, in nats. With onnxruntime-node 1.31 on x86-64 the two were bitwise equal (difference
 * 0) for all 5,700 single substitutions of a 300-residue protein, with this model and with its
 * int8 MatMulInteger export. The bound leaves room for kernels that sum in another order.
 */
const LLR_TOLERANCE = 1e-4;

/** 700 residues of real proteins end to end: two windows of 511 residues that overlap by 322. */
const TWO_WINDOW_PROTEIN = [GFP_AEQVI, LYSOZYME_CHICK, INSULIN_HUMAN, UBIQUITIN_HUMAN, GFP_AEQVI, LYSOZYME_CHICK].join('').slice(0, 700);

function variantsOf(residues: string, names: string[]): Variant[] {
  const parsed = parseVariants(names, residues);
  if (!parsed.ok) throw new Error(parsed.problems.map((problem) => problem.message).join('; '));
  return parsed.variants;
}

function maxLlrDifference(a: ScanResult, b: ScanResult): number {
  return Math.max(...a.variants.map((variant, index) => Math.abs(variant.llr - b.variants[index].llr)));
}

describe('variant scorer on the smoke model', () => {
  let engine: InferenceEngine;
  let scorer: VariantScorer;
  let cache: PrefixCache;

  beforeAll(async () => {
    engine = new InferenceEngine({ modelDir: SMOKE_MODEL_DIR, intraOpThreads: 1, logger: pino({ level: 'silent' }) });
    await engine.start();
    cache = new PrefixCache({ maxBytes: 64 * 1024 * 1024, blockSize: 16 });
    scorer = new VariantScorer({ runner: engine, cache });
  });

  afterAll(async () => {
    await engine.stop();
  });

  beforeEach(() => {
    cache.clear();
  });

  test('prefix cache is available for the smoke model', () => {
    expect(scorer.prefixCacheAvailable).toBe(true);
  });

  test('cached and uncached LLRs agree', async () => {
    // Positions around block boundaries: residue 17 is the first token after the first block of 16.
    const positions = new Set([1, 2, 15, 16, 17, 18, 32, 33, 34, 100, 146, 147]);
    const variants = allSingleSubstitutions(LYSOZYME_CHICK).variants.filter((variant) => positions.has(variant.substitutions[0].position));
    const uncached = await scorer.score(LYSOZYME_CHICK, variants, { prefixCache: false, predictions: false });
    const cached = await scorer.score(LYSOZYME_CHICK, variants, { prefixCache: true, predictions: false });

    expect(uncached.stats.prefixCache).toBe(false);
    expect(cached.stats.prefixCache).toBe(true);
    expect(cached.stats.reusedPositions).toBeGreaterThan(0);
    expect(cached.variants).toHaveLength(variants.length);
    expect(maxLlrDifference(cached, uncached)).toBeLessThan(LLR_TOLERANCE);
    expect(Math.abs(cached.wildType.logLikelihood - uncached.wildType.logLikelihood)).toBeLessThan(LLR_TOLERANCE);
  });

  test('cached heads match uncached heads', async () => {
    const variants = variantsOf(LYSOZYME_CHICK, ['K19A', 'R23W:L26P', 'N62G']);
    const uncached = await scorer.score(LYSOZYME_CHICK, variants, { prefixCache: false });
    const cached = await scorer.score(LYSOZYME_CHICK, variants, { prefixCache: true });

    cached.variants.forEach((variant, index) => {
      const expected = uncached.variants[index].prediction!;
      const actual = variant.prediction!;
      expect(actual.localization.top.map((label) => label.label)).toEqual(expected.localization.top.map((label) => label.label));
      actual.localization.top.forEach((label, rank) => expect(label.score).toBeCloseTo(expected.localization.top[rank].score, 4));
      actual.go.top.forEach((term, rank) => expect(term.score).toBeCloseTo(expected.go.top[rank].score, 4));
      expect(actual.domains).toEqual(expected.domains);
    });
  });

  test('LLR equals the difference of predicted log-likelihoods', async () => {
    const variants = variantsOf(UBIQUITIN_HUMAN, ['K48R', 'I44A:L8A', 'G76V']);
    const scan = await scorer.score(UBIQUITIN_HUMAN, variants);
    const [wildType, ...predicted] = await engine.predict([UBIQUITIN_HUMAN, ...variants.map((variant) => applyVariant(UBIQUITIN_HUMAN, variant))]);

    expect(Math.abs(scan.wildType.logLikelihood - wildType.lm.logLikelihood)).toBeLessThan(LLR_TOLERANCE);
    scan.variants.forEach((variant, index) => {
      const expected = predicted[index].lm.logLikelihood - wildType.lm.logLikelihood;
      expect(Math.abs(variant.llr - expected)).toBeLessThan(LLR_TOLERANCE);
    });
  });

  test('wild type against itself scores 0', async () => {
    const variants = variantsOf(LYSOZYME_CHICK, ['K19K', 'N62N', 'L147L']);
    const cached = await scorer.score(LYSOZYME_CHICK, variants, { prefixCache: true });
    const uncached = await scorer.score(LYSOZYME_CHICK, variants, { prefixCache: false });

    for (const variant of [...cached.variants, ...uncached.variants]) {
      expect(Math.abs(variant.llr)).toBeLessThan(LLR_TOLERANCE);
    }
  });

  test('second scan of a sequence reuses the cached wild type', async () => {
    const variants = variantsOf(GFP_AEQVI, ['S65T', 'Y66H']);
    await scorer.score(GFP_AEQVI, variants);
    const hitsBefore = cache.stats.hits;
    const second = await scorer.score(GFP_AEQVI, variants);

    expect(cache.stats.hits).toBeGreaterThan(hitsBefore);
    // The wild type runs only its last, partial block; each variant group runs once.
    expect(second.stats.modelRuns).toBe(1 + 1);
  });

  test('few variants need few wild-type chunks', async () => {
    const scan = await scorer.score(LYSOZYME_CHICK, variantsOf(LYSOZYME_CHICK, ['N62G', 'N62A']));

    // The wild type runs up to the boundary before residue 62 and then to its end; both variants share one run.
    expect(scan.stats.modelRuns).toBe(2 + 1);
    expect(scan.stats.reusedPositions).toBe(2 * (1 + 48));
  });

  test('LLRs only use exact past', async () => {
    const variants = variantsOf(LYSOZYME_CHICK, ['N62G', 'N62A', 'K19A:N62G']);
    const cached = await scorer.score(LYSOZYME_CHICK, variants, { prefixCache: true, predictions: false });
    const uncached = await scorer.score(LYSOZYME_CHICK, variants, { prefixCache: false, predictions: false });

    // Token 0 is <bos>, so residue r is token r, and a variant reuses the r tokens before it.
    // The wild type runs to the block boundaries at tokens 17 and 49 and then to its end. The
    // variants follow in two groups, one per first changed residue (62 and 19).
    expect(cached.stats.modelRuns).toBe(3 + 2);
    expect(cached.stats.reusedPositions).toBe(62 + 62 + 19);
    expect(maxLlrDifference(cached, uncached)).toBeLessThan(LLR_TOLERANCE);
    expect(cached.variants.every((variant) => variant.prediction === undefined)).toBe(true);
  });

  test('predictions use block boundaries', async () => {
    const variants = variantsOf(LYSOZYME_CHICK, ['N62G', 'N62A']);
    const cached = await scorer.score(LYSOZYME_CHICK, variants, { prefixCache: true, predictions: true });
    const uncached = await scorer.score(LYSOZYME_CHICK, variants, { prefixCache: false, predictions: false });

    expect(cached.stats.reusedPositions).toBe(2 * 49);
    expect(maxLlrDifference(cached, uncached)).toBeLessThan(LLR_TOLERANCE);
    for (const variant of cached.variants) expect(Number.isFinite(variant.prediction!.localization.top[0].score)).toBe(true);
  });

  test('two-window sequence agrees with and without the cache', async () => {
    // 350 lies in both windows (the second starts at residue 190), 600 only in the second.
    const substitute = (position: number, to: string): string => `${TWO_WINDOW_PROTEIN[position - 1]}${position}${to}`;
    const variants = variantsOf(TWO_WINDOW_PROTEIN, [substitute(350, 'W'), substitute(600, 'W'), `${substitute(10, 'W')}:${substitute(650, 'W')}`]);
    const cached = await scorer.score(TWO_WINDOW_PROTEIN, variants, { prefixCache: true });
    const uncached = await scorer.score(TWO_WINDOW_PROTEIN, variants, { prefixCache: false });
    const [wildType, ...predicted] = await engine.predict([
      TWO_WINDOW_PROTEIN,
      ...variants.map((variant) => applyVariant(TWO_WINDOW_PROTEIN, variant)),
    ]);

    expect(cached.wildType.prediction.windows).toBe(2);
    expect(maxLlrDifference(cached, uncached)).toBeLessThan(LLR_TOLERANCE);
    cached.variants.forEach((variant, index) => {
      expect(Math.abs(variant.llr - (predicted[index].lm.logLikelihood - wildType.lm.logLikelihood))).toBeLessThan(LLR_TOLERANCE);
    });
  });
});
