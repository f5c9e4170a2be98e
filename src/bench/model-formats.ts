import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { DEFAULT_SESSION_TUNING } from '../inference/engine';
import { loadModelPackage, type ModelPackage } from '../inference/manifest';
import { Tokenizer } from '../inference/tokenizer';
import { sessionOptions as workerSessionOptions } from '../inference/worker';
import { syntheticProtein } from './model-latency';
import { median } from './stats';

/** Debian's interpreter, which imports Debian's python3-onnx package; training.quantize needs nothing else. */
export const PYTHON = '/usr/bin/python3';

/** A graph that training.quantize writes, and its command-line arguments. */
interface FormatSpec {
  label: string;
  args: string[];
}

/** The first entry is the baseline of every ratio. */
const FORMAT_SPECS: FormatSpec[] = [
  { label: 'float32', args: ['--format', 'float32'] },
  { label: 'int8', args: ['--format', 'int8'] },
  { label: 'nbits2 b32', args: ['--format', 'nbits2', '--block-size', '32'] },
  { label: 'nbits2 b64', args: ['--format', 'nbits2', '--block-size', '64'] },
  { label: 'nbits2 b32 kernel-act', args: ['--format', 'nbits2', '--block-size', '32', '--activations', 'kernel'] },
  { label: 'nbits4 b32', args: ['--format', 'nbits4', '--block-size', '32'] },
];

const EXPORTED = 'exported';

interface GraphFile {
  label: string;
  file: string;
  bytes: number;
}

/** One input shape: `batch` sequences of `residues` residues each, with no padding. */
export interface Workload {
  label: string;
  feeds: Record<string, Tensor>;
}

export interface ModelFormatOptions {
  modelDir: string;
  /** Repository root, the working directory of `python3 -m training.quantize`. */
  repoRoot: string;
  /** Timed rounds per workload and thread setting; each round runs every graph once. */
  rounds: number;
  warmUpRounds: number;
}

/** Returns the session options of the inference worker (src/inference/worker.ts) with `threads` intra-op threads. */
function sessionOptions(threads: number): InferenceSession.SessionOptions {
  return workerSessionOptions(threads, DEFAULT_SESSION_TUNING);
}

/**
 * Returns the path of the exporter's graph: the manifest's exportedOnnxFile when the package also
 * ships a rewritten graph as its onnxFile, else onnxFile.
 */
function exportedGraphPath(pkg: ModelPackage): string {
  const raw = JSON.parse(readFileSync(path.join(pkg.dir, 'manifest.json'), 'utf8')) as { exportedOnnxFile?: unknown };
  return typeof raw.exportedOnnxFile === 'string' ? path.join(pkg.dir, raw.exportedOnnxFile) : pkg.onnxPath;
}

/** Returns why the variants cannot be written here, or null when python3 and its onnx module are present. */
export function pythonProblem(repoRoot: string): string | null {
  const probe = spawnSync(PYTHON, ['-c', 'import onnx'], { cwd: repoRoot, encoding: 'utf8' });
  if (probe.error) return `${PYTHON} could not be started (${probe.error.message})`;
  if (probe.status !== 0) return `${PYTHON} cannot import the onnx module (${probe.stderr.trim().split('\n').pop()})`;
  return null;
}

function writeVariants(modelDir: string, repoRoot: string, outDir: string, failures: string[]): GraphFile[] {
  const files: GraphFile[] = [];
  for (const spec of FORMAT_SPECS) {
    const file = path.join(outDir, `${spec.label.replace(/ /g, '-')}.onnx`);
    const args = ['-m', 'training.quantize', modelDir, ...spec.args, '--out', file];
    const result = spawnSync(PYTHON, args, { cwd: repoRoot, encoding: 'utf8' });
    if (result.status !== 0) {
      failures.push(`${spec.label}: training.quantize failed: ${(result.stderr || String(result.error)).trim().split('\n').pop()}`);
      continue;
    }
    files.push({ label: spec.label, file, bytes: statSync(file).size });
  }
  return files;
}

/** Builds the feeds of `sequences` (all of one length) with an empty past when the graph takes one. */
export function buildFeeds(pkg: ModelPackage, sequences: string[]): Record<string, Tensor> {
  const tokenizer = new Tokenizer(pkg.manifest.tokenizer);
  const encoded = sequences.map((sequence) => tokenizer.encode(sequence).ids);
  const batch = encoded.length;
  const length = encoded[0].length;
  const ids = BigInt64Array.from(encoded.flat(), (id) => BigInt(id));
  const feeds: Record<string, Tensor> = {
    [pkg.manifest.inputs.inputIds]: new Tensor('int64', ids, [batch, length]),
    [pkg.manifest.inputs.attentionMask]: new Tensor('int64', new BigInt64Array(batch * length).fill(1n), [batch, length]),
  };

  const cache = pkg.manifest.prefixCache;
  if (cache) {
    for (const name of [...cache.pastKeys, ...cache.pastValues]) {
      feeds[name] = new Tensor('float32', new Float32Array(0), [batch, cache.heads, 0, cache.headDim]);
    }
    feeds[cache.pastStateSum] = new Tensor('float32', new Float32Array(batch * cache.stateSumWidth), [batch, cache.stateSumWidth]);
  }
  return feeds;
}

function maxAbsDifference(expected: Tensor, actual: Tensor): number {
  const a = expected.data as Float32Array;
  const b = actual.data as Float32Array;
  if (a.length !== b.length) return Number.POSITIVE_INFINITY;
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

async function createSessions(files: GraphFile[], threads: number, failures: string[]): Promise<Map<string, InferenceSession>> {
  const sessions = new Map<string, InferenceSession>();
  for (const { label, file } of files) {
    try {
      sessions.set(label, await InferenceSession.create(file, sessionOptions(threads)));
    } catch (err) {
      failures.push(`${label}: session failed to load with ${threads} threads: ${(err as Error).message.trim()}`);
    }
  }
  return sessions;
}

/**
 * Runs each variant on every workload and returns, per variant and output, the largest absolute
 * difference from the exported graph. A variant whose run fails is removed from `sessions`.
 */
async function compareOutputs(sessions: Map<string, InferenceSession>, workloads: Workload[], failures: string[]): Promise<Map<string, Map<string, number>>> {
  const differences = new Map<string, Map<string, number>>();
  const reference = sessions.get(EXPORTED)!;
  for (const workload of workloads) {
    const expected = await reference.run(workload.feeds);
    for (const [label, session] of sessions) {
      if (label === EXPORTED) continue;
      let actual: InferenceSession.OnnxValueMapType;
      try {
        actual = await session.run(workload.feeds);
      } catch (err) {
        failures.push(`${label}: run failed on ${workload.label}: ${(err as Error).message.trim()}`);
        sessions.delete(label);
        differences.delete(label);
        continue;
      }
      const byOutput = differences.get(label) ?? new Map<string, number>();
      for (const name of reference.outputNames) {
        const difference = maxAbsDifference(expected[name], actual[name]);
        byOutput.set(name, Math.max(byOutput.get(name) ?? 0, difference));
      }
      differences.set(label, byOutput);
    }
  }
  return differences;
}

/**
 * Times every session on one workload in interleaved rounds: each round runs every graph once, in
 * an order rotated by one per round, so that a load change on the machine hits all graphs alike.
 */
export async function medianLatencies(sessions: Map<string, InferenceSession>, workload: Workload, rounds: number, warmUpRounds: number): Promise<Map<string, number>> {
  const entries = [...sessions];
  const times = new Map<string, number[]>(entries.map(([label]) => [label, []]));
  for (let round = 0; round < warmUpRounds + rounds; round++) {
    for (let i = 0; i < entries.length; i++) {
      const [label, session] = entries[(i + round) % entries.length];
      const startedAt = performance.now();
      await session.run(workload.feeds);
      if (round >= warmUpRounds) times.get(label)!.push(performance.now() - startedAt);
    }
  }
  return new Map([...times].map(([label, values]) => [label, median(values)]));
}

const kib = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KiB`;

function printDifferences(differences: Map<string, Map<string, number>>): void {
  console.log('  largest absolute difference from the exported graph, over both workloads (1 thread):');
  for (const [label, byOutput] of differences) {
    const parts = [...byOutput].map(([name, value]) => `${name} ${value.toExponential(1)}`);
    console.log(`    ${label.padEnd(22)} ${parts.join(', ')}`);
  }
}

function printLatencies(threadsLabel: string, workloads: Workload[], medians: Map<string, number>[]): void {
  console.log(`  ${threadsLabel}: median ms (ratio to float32)`);
  console.log(`    ${''.padEnd(22)} ${workloads.map((workload) => workload.label.padEnd(22)).join('')}`);
  for (const label of medians[0].keys()) {
    const cells = medians.map((byLabel) => {
      const value = byLabel.get(label)!;
      const baseline = byLabel.get(FORMAT_SPECS[0].label);
      const ratio = baseline === undefined ? '' : ` (${(value / baseline).toFixed(2)}x)`;
      return `${value.toFixed(2)}${ratio}`.padEnd(22);
    });
    console.log(`    ${label.padEnd(22)} ${cells.join('')}`);
  }
}

/**
 * Writes each variant of the model's BitLinear kernels with `python3 -m training.quantize` into a
 * temporary folder and checks its outputs against the exported graph. Then prints the median
 * latency of one 400-residue protein and of a batch of 8 x 256 residues, with 1 thread and with
 * onnxruntime's default thread count, and each ratio to the float32 variant of the same run.
 */
export async function printModelFormats(options: ModelFormatOptions): Promise<void> {
  console.log('\nBitLinear kernel formats (training.quantize), onnxruntime-node sessions with the worker options:');
  const problem = pythonProblem(options.repoRoot);
  if (problem) {
    console.log(`  skipped: ${problem}; install python3-onnx to write the variants`);
    return;
  }

  const pkg = await loadModelPackage(options.modelDir);
  const outDir = mkdtempSync(path.join(tmpdir(), 'bitnet-formats-'));
  const failures: string[] = [];
  try {
    const exported = exportedGraphPath(pkg);
    const files = [{ label: EXPORTED, file: exported, bytes: statSync(exported).size }, ...writeVariants(pkg.dir, options.repoRoot, outDir, failures)];
    console.log(`  graph files: ${files.map(({ label, bytes }) => `${label} ${kib(bytes)}`).join(', ')}`);

    const workloads: Workload[] = [
      { label: '1 x 400 residues', feeds: buildFeeds(pkg, [syntheticProtein(400, 7)]) },
      { label: '8 x 256 residues', feeds: buildFeeds(pkg, Array.from({ length: 8 }, (_, i) => syntheticProtein(256, 11 + i))) },
    ];

    let differencesPrinted = false;
    for (const threads of [1, 0]) {
      const sessions = await createSessions(files, threads, failures);
      try {
        if (!sessions.has(EXPORTED)) throw new Error(`the exported graph ${exported} failed to load`);
        const differences = await compareOutputs(sessions, workloads, failures);
        if (!differencesPrinted) {
          printDifferences(differences);
          differencesPrinted = true;
        }
        const medians = [];
        for (const workload of workloads) medians.push(await medianLatencies(sessions, workload, options.rounds, options.warmUpRounds));
        printLatencies(`${threads === 0 ? 'default threads' : '1 thread'}, ${options.rounds} interleaved rounds`, workloads, medians);
      } finally {
        for (const session of sessions.values()) await session.release();
      }
    }
    for (const failure of new Set(failures)) console.log(`  not measured: ${failure}`);
  } finally {
    rmSync(outDir, { recursive: true, force: true });
  }
}
