import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import { PrefixCache } from '../cache/prefix-cache';
import { InferenceEngine } from '../inference/engine';
import { VariantScorer, type ScanResult } from '../variants/scorer';
import { allSingleSubstitutions, STANDARD_AMINO_ACIDS } from '../variants/substitutions';
import { benchProteinsFile, readProteins } from './proteins';
import { median } from './stats';

/** Residues of the scanned protein. */
const SCAN_RESIDUES = 300;
const BLOCK_RESIDUES = 16;
/** Large enough that nothing of one 300-residue protein is evicted. */
const CACHE_BYTES = 256 * 1024 * 1024;
/** Each round runs the scan without and with the cache, in alternating order, so a change in machine load hits both. */
const ROUNDS = 3;
const TARGET_RATIO = 1.8;

interface ModeFigures {
  /** Wall time of each round's scan. */
  seconds: number[];
  modelRuns: number;
  reusedShare: number;
}

/** Returns the first standard-residue protein of the benchmark proteins with at least SCAN_RESIDUES residues, cut to that length. */
function scanProtein(repoRoot: string): { id: string; residues: string } {
  const protein = readProteins(benchProteinsFile(repoRoot)).find(
    ({ residues }) => residues.length >= SCAN_RESIDUES && [...residues].every((residue) => STANDARD_AMINO_ACIDS.includes(residue)),
  );
  if (!protein) throw new Error(`no protein of ${SCAN_RESIDUES} standard residues in ${benchProteinsFile(repoRoot)}`);
  return { id: protein.id, residues: protein.residues.slice(0, SCAN_RESIDUES) };
}

function hasPrefixCache(modelDir: string): boolean {
  const manifest = JSON.parse(readFileSync(path.join(modelDir, 'manifest.json'), 'utf8')) as { prefixCache?: unknown };
  return manifest.prefixCache !== undefined;
}

/** Returns `modelDir` when its graph takes past keys and values, else the smoke-test model in the test fixtures, or null. */
function modelWithPrefixCache(modelDir: string, repoRoot: string): string | null {
  if (hasPrefixCache(modelDir)) return modelDir;
  const fixture = path.join(repoRoot, 'test', 'fixtures', 'model-smoke');
  return existsSync(path.join(fixture, 'manifest.json')) && hasPrefixCache(fixture) ? fixture : null;
}

function maxLlrDifference(a: ScanResult, b: ScanResult): number {
  return a.variants.reduce((max, variant, index) => Math.max(max, Math.abs(variant.llr - b.variants[index].llr)), 0);
}

/**
 * Prints (e): a full single-substitution scan (19 per residue) of a 300-residue real protein,
 * LLRs only, without and with the prefix cache. It runs ROUNDS alternating rounds on one engine
 * with one onnxruntime thread, and prints each round's wall time, the medians, variants per
 * second, the ratio of the medians and of each round, and the largest LLR difference between the
 * two. The prefix cache starts empty in every round, so the wild type's block-by-block run is
 * counted.
 */
export async function printVariantScan(modelDir: string, repoRoot: string, load: () => string): Promise<void> {
  const scanModel = modelWithPrefixCache(modelDir, repoRoot);
  const protein = scanProtein(repoRoot);
  const { variants } = allSingleSubstitutions(protein.residues);
  console.log(`\n(e) single-substitution scan of residues 1-${SCAN_RESIDUES} of ${protein.id} (${variants.length} variants), LLRs only, 1 thread, ${ROUNDS} rounds:`);
  if (!scanModel) {
    console.log('  skipped: neither the model nor test/fixtures/model-smoke takes past keys and values');
    return;
  }
  if (scanModel !== modelDir) console.log(`  the model has no prefix-cache inputs, so the scan uses ${path.relative(repoRoot, scanModel)}`);

  const engine = new InferenceEngine({ modelDir: scanModel, intraOpThreads: 1, logger: pino({ level: 'silent' }) });
  await engine.start();
  const cache = new PrefixCache({ maxBytes: CACHE_BYTES, blockSize: BLOCK_RESIDUES });
  const scorer = new VariantScorer({ runner: engine, cache });
  const totals: Record<'uncached' | 'cached', ModeFigures> = {
    uncached: { seconds: [], modelRuns: 0, reusedShare: 0 },
    cached: { seconds: [], modelRuns: 0, reusedShare: 0 },
  };
  let largestDifference = 0;

  try {
    // An untimed scan of a few positions warms up the worker and onnxruntime.
    await scorer.score(protein.residues, variants.slice(0, 19 * 20), { predictions: false, prefixCache: false });
    for (let round = 0; round < ROUNDS; round++) {
      const results: Partial<Record<'uncached' | 'cached', ScanResult>> = {};
      const order: Array<'uncached' | 'cached'> = round % 2 === 0 ? ['uncached', 'cached'] : ['cached', 'uncached'];
      for (const mode of order) {
        cache.clear();
        const startedAt = performance.now();
        const result = await scorer.score(protein.residues, variants, { predictions: false, prefixCache: mode === 'cached' });
        totals[mode].seconds.push((performance.now() - startedAt) / 1000);
        totals[mode].modelRuns = result.stats.modelRuns;
        totals[mode].reusedShare = result.stats.reusedPositions / (result.stats.reusedPositions + result.stats.computedPositions);
        results[mode] = result;
      }
      largestDifference = Math.max(largestDifference, maxLlrDifference(results.cached!, results.uncached!));
    }
  } finally {
    await engine.stop();
  }

  const line = (label: string, figures: ModeFigures): string => {
    const seconds = median(figures.seconds);
    const reused = (100 * figures.reusedShare).toFixed(0);
    return `  ${label} median ${seconds.toFixed(1)} s per scan (${figures.seconds.map((value) => value.toFixed(1)).join(', ')}), ${(variants.length / seconds).toFixed(0)} variants/s, ${figures.modelRuns} model runs, ${reused}% of token positions reused`;
  };
  console.log(line('without prefix cache:                    ', totals.uncached));
  console.log(line(`with prefix cache (${BLOCK_RESIDUES}-residue blocks):    `, totals.cached));
  console.log(`  (the wild type runs and is cached in ${BLOCK_RESIDUES}-residue blocks; and each variant runs from its substitution after the wild type's keys and values up to it)`);
  const ratio = median(totals.uncached.seconds) / median(totals.cached.seconds);
  const roundRatios = totals.uncached.seconds.map((seconds, round) => (seconds / totals.cached.seconds[round]).toFixed(2));
  console.log(`  ratio of each round: ${roundRatios.join(', ')}`);
  console.log(`  ratio of the medians without / with: ${ratio.toFixed(2)}x (target ${TARGET_RATIO}x, ${ratio >= TARGET_RATIO ? 'met' : 'missed'}), ${load()}`);
  console.log(`  largest LLR difference between the two: ${largestDifference.toExponential(2)} nats`);
}
