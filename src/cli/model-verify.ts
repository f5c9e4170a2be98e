import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { InferenceEngine } from '../inference/engine';
import type { OutputTensor } from '../inference/protocol';
import { concatPositions, maxAbsDifference, referenceSchema, type ReferenceFile } from '../inference/reference';
import { createLogger } from '../log';
import { loadConfigOrReport, EXIT_CONFIG } from './run';

/** Largest accepted absolute difference between onnxruntime and PyTorch outputs, by default. */
export const DEFAULT_VERIFY_TOLERANCE = 0.05;

export interface ModelVerifyOptions {
  configFile?: string;
  modelDir?: string;
  /** Reference file; `<model folder>/reference.json` when absent. */
  referenceFile?: string;
  tolerance: number;
}

/** Largest difference per output name over all sequences of one run. */
type Differences = Map<string, number>;

/**
 * Runs the reference file's token ids through onnxruntime-node, once in one pass with an empty
 * past and, when the model has a prefix cache, again as a prefix and the rest fed after the
 * prefix's past. Prints the largest absolute difference from the PyTorch outputs per output and
 * run. Resolves with 0 when every difference is within the tolerance, 1 otherwise or when the
 * reference cannot be read or does not fit the model.
 */
export async function runModelVerify(options: ModelVerifyOptions): Promise<number> {
  const config = loadConfigOrReport(options.configFile);
  if (!config) return EXIT_CONFIG;

  const modelDir = options.modelDir ? path.resolve(options.modelDir) : config.model.dir;
  const referenceFile = options.referenceFile ? path.resolve(options.referenceFile) : path.join(modelDir, 'reference.json');
  const reference = await readReference(referenceFile);
  if (typeof reference === 'string') {
    process.stderr.write(`bitnet-edge: ${reference}\n`);
    return 1;
  }

  const logger = createLogger(process.env.BITNET_EDGE_LOG_LEVEL ?? 'warn', process.stderr);
  const engine = new InferenceEngine({ modelDir, intraOpThreads: config.model.intraOpThreads, chunkTokens: config.model.chunkTokens, logger });
  await engine.start();

  let onePass: Differences;
  let split: Differences | null;
  try {
    const { heads } = engine.manifest;
    const perPosition = new Set([heads.lm.output, ...(heads.domain ? [heads.domain.output] : [])]);
    onePass = await compareOnePass(engine, reference);
    split = engine.manifest.prefixCache ? await compareSplit(engine, reference, perPosition) : null;
  } catch (err) {
    process.stderr.write(`bitnet-edge: the reference ${referenceFile} does not fit the model in ${modelDir}: ${(err as Error).message}\n`);
    return 1;
  } finally {
    await engine.stop();
  }

  const over = report(engine, referenceFile, reference, onePass, split, options.tolerance);
  return over === 0 ? 0 : 1;
}

async function readReference(file: string): Promise<ReferenceFile | string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    return `cannot read the reference file ${file}: ${(err as Error).message}; pass --reference FILE`;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return `invalid JSON in the reference file ${file}: ${(err as Error).message}`;
  }
  const result = referenceSchema.safeParse(parsed);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
    return `invalid reference file ${file}:\n  ${problems.join('\n  ')}`;
  }
  return result.data;
}

function recordDifference(differences: Differences, name: string, difference: number): void {
  differences.set(name, Math.max(differences.get(name) ?? 0, difference));
}

/** Compares every reference output with the model's outputs of one run over the whole sequence. */
async function compareOnePass(engine: InferenceEngine, reference: ReferenceFile): Promise<Differences> {
  const differences: Differences = new Map();
  for (const sequence of reference.sequences) {
    const { outputs } = await engine.runTokens([sequence.inputIds]);
    for (const [name, expected] of Object.entries(sequence.outputs)) {
      recordDifference(differences, name, maxAbsDifference(expected, requireOutput(outputs, name), name));
    }
  }
  return differences;
}

/**
 * Compares every reference output with the model's outputs when the first half of the tokens
 * runs first and the rest runs after its past. Per-position outputs join both runs. Per-sequence
 * outputs come from the second run, whose pooling covers past and current positions. A sequence
 * of one token cannot be split and is left out.
 */
async function compareSplit(engine: InferenceEngine, reference: ReferenceFile, perPosition: ReadonlySet<string>): Promise<Differences> {
  const differences: Differences = new Map();
  for (const sequence of reference.sequences) {
    const ids = sequence.inputIds;
    if (ids.length < 2) continue;

    const prefixLength = Math.floor(ids.length / 2);
    const prefix = await engine.runTokens([ids.slice(0, prefixLength)]);
    if (!prefix.present) throw new Error('the model returned no present keys and values');
    const rest = await engine.runTokens([ids.slice(prefixLength)], prefix.present);

    for (const [name, expected] of Object.entries(sequence.outputs)) {
      const restOutput = requireOutput(rest.outputs, name);
      const actual = perPosition.has(name) ? concatPositions(requireOutput(prefix.outputs, name), restOutput) : restOutput;
      recordDifference(differences, name, maxAbsDifference(expected, actual, name));
    }
  }
  return differences;
}

function requireOutput(outputs: Record<string, OutputTensor>, name: string): OutputTensor {
  const output = outputs[name];
  if (!output) throw new Error(`the reference has output "${name}", which the model's manifest does not name as a head output`);
  return output;
}

/** Prints the differences and returns the number of outputs over the tolerance. */
function report(
  engine: InferenceEngine,
  referenceFile: string,
  reference: ReferenceFile,
  onePass: Differences,
  split: Differences | null,
  tolerance: number,
): number {
  const positions = reference.positions === null ? 'all positions' : `first ${reference.positions} positions`;
  const lines = [
    `model ${engine.manifest.name} (${engine.modelId})`,
    `reference ${path.relative(process.cwd(), referenceFile) || referenceFile}: ${reference.sequences.length} sequences, ${positions}, torch ${reference.torchVersion ?? 'unknown'}`,
    'largest absolute difference from the reference:',
    `${'output'.padEnd(24)}${'one pass'.padStart(14)}${'prefix split'.padStart(14)}`,
  ];

  let over = 0;
  const failing: string[] = [];
  const format = (difference: number | undefined, failed: string[], run: string): string => {
    if (difference === undefined) return 'n/a';
    if (difference > tolerance) {
      over += 1;
      failed.push(run);
    }
    return difference.toExponential(2);
  };
  for (const name of onePass.keys()) {
    const failed: string[] = [];
    const onePassText = format(onePass.get(name), failed, 'one pass');
    const splitText = format(split?.get(name), failed, 'prefix split');
    lines.push(`${name.padEnd(24)}${onePassText.padStart(14)}${splitText.padStart(14)}`);
    if (failed.length > 0) failing.push(`${name} (${failed.join(', ')})`);
  }
  if (!split) lines.push('prefix split: not run, because the model has no prefix-cache inputs');
  lines.push(over === 0 ? `ok: every difference is within ${tolerance}` : `FAILED: over ${tolerance}: ${failing.join('; ')}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  return over;
}
