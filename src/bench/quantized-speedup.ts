import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { InferenceSession } from 'onnxruntime-node';
import { DEFAULT_SESSION_TUNING } from '../inference/engine';
import { loadModelPackage, type ModelPackage } from '../inference/manifest';
import { sessionOptions } from '../inference/worker';
import { estimatePeakMacRate, loadAverage, readCpuInfo } from './machine';
import { buildFeeds, medianLatencies, PYTHON, pythonProblem, type Workload } from './model-formats';
import { syntheticProtein } from './model-latency';
import { matmulTotals, profileGraphs, type OpProfile } from './op-profile';

const QUANTIZED = 'quantized';
const FLOAT32 = 'float32';

export interface SpeedupOptions {
  modelDir: string;
  /** Repository root, the working directory of `python3 -m training.quantize`. */
  repoRoot: string;
  rounds: number;
  warmUpRounds: number;
  /** Timed runs of each profile, after warmUpRounds untimed ones. */
  profileRuns: number;
}

/** Median latency of one workload with one thread. */
export interface WorkloadLatency {
  label: string;
  batch: number;
  /** Tokens per sequence, `<bos>` included. */
  tokens: number;
  quantizedMs: number;
  float32Ms: number;
}

export interface SpeedupFigures {
  /** File name of the graph the daemon loads (the manifest's onnxFile). */
  quantizedFile: string;
  workloads: WorkloadLatency[];
  /** Profiles of the first workload, keyed QUANTIZED and FLOAT32. */
  profiles: Map<string, OpProfile>;
  loadAverage: string;
}

/**
 * Returns the multiply-accumulates of one forward pass of `batch` sequences of `tokens` tokens.
 * Per token and layer, the BitLinear layers do 3d² (fused QKV), d² (attention output) and d·ffn
 * twice (FFN in and out). Attention does d·tokens for QKᵀ and again for attention × V, because the
 * graph computes the whole score matrix and masks it.
 */
export function forwardMacs(pkg: ModelPackage, batch: number, tokens: number): { bitLinear: number; attention: number } {
  const architecture = pkg.manifest.architecture ?? {};
  const [layers, dModel, ffn] = [architecture.layers, architecture.dModel, architecture.ffn];
  if (typeof layers !== 'number' || typeof dModel !== 'number' || typeof ffn !== 'number') return { bitLinear: 0, attention: 0 };
  const perTokenBitLinear = layers * (4 * dModel * dModel + 2 * dModel * ffn);
  const perTokenAttention = layers * 2 * dModel * tokens;
  return { bitLinear: batch * tokens * perTokenBitLinear, attention: batch * tokens * perTokenAttention };
}

function writeFloat32(pkg: ModelPackage, repoRoot: string, outDir: string): string {
  const file = path.join(outDir, 'float32.onnx');
  const result = spawnSync(PYTHON, ['-m', 'training.quantize', pkg.dir, '--format', 'float32', '--out', file], { cwd: repoRoot, encoding: 'utf8' });
  if (result.status !== 0) {
    throw new Error(`training.quantize --format float32 failed: ${(result.stderr || String(result.error)).trim().split('\n').pop()}`);
  }
  return file;
}

/**
 * Times the graph the daemon loads against the float32 graph of the same network (training.quantize
 * --format float32) with one thread, in interleaved rounds, on one 400-residue protein and a batch
 * of 8 × 256 residues, and profiles both on the first workload. Returns null, after printing why,
 * when the float32 graph cannot be written here.
 */
export async function measureQuantizedSpeedup(options: SpeedupOptions): Promise<SpeedupFigures | null> {
  const problem = pythonProblem(options.repoRoot);
  if (problem) {
    console.log(`  skipped: ${problem}; install python3-onnx to write the float32 graph`);
    return null;
  }

  const pkg = await loadModelPackage(options.modelDir);
  const outDir = mkdtempSync(path.join(tmpdir(), 'bitnet-speedup-'));
  try {
    const files = new Map([
      [QUANTIZED, pkg.onnxPath],
      [FLOAT32, writeFloat32(pkg, options.repoRoot, outDir)],
    ]);
    const shapes = [
      { label: '1 x 400 residues', batch: 1, residues: 400 },
      { label: '8 x 256 residues', batch: 8, residues: 256 },
    ];
    const workloads: Array<Workload & { batch: number; tokens: number }> = shapes.map(({ label, batch, residues }) => {
      const feeds = buildFeeds(pkg, Array.from({ length: batch }, (_, i) => syntheticProtein(residues, 7 + i)));
      return { label, feeds, batch, tokens: feeds[pkg.manifest.inputs.inputIds].dims[1] };
    });

    const sessions = new Map<string, InferenceSession>();
    const latencies: WorkloadLatency[] = [];
    try {
      for (const [label, file] of files) sessions.set(label, await InferenceSession.create(file, sessionOptions(1, DEFAULT_SESSION_TUNING)));
      for (const workload of workloads) {
        const medians = await medianLatencies(sessions, workload, options.rounds, options.warmUpRounds);
        latencies.push({ label: workload.label, batch: workload.batch, tokens: workload.tokens, quantizedMs: medians.get(QUANTIZED)!, float32Ms: medians.get(FLOAT32)! });
      }
    } finally {
      for (const session of sessions.values()) await session.release();
    }

    const profiles = await profileGraphs(files, workloads[0].feeds, 1, options.warmUpRounds, options.profileRuns);
    return { quantizedFile: path.basename(pkg.onnxPath), workloads: latencies, profiles, loadAverage: loadAverage() };
  } finally {
    rmSync(outDir, { recursive: true, force: true });
  }
}

function printProfile(label: string, profile: OpProfile): void {
  const top = profile.byOpType.slice(0, 10).map((entry) => `${entry.opType} ${((100 * entry.microseconds) / profile.kernelMicroseconds).toFixed(1)}%`);
  console.log(`  ${label} profile, ${(profile.kernelMicroseconds / 1000).toFixed(2)} ms of kernels per run: ${top.join(', ')}`);
}

const gmacs = (macs: number, microseconds: number): string => (microseconds > 0 ? `${(macs / microseconds / 1000).toFixed(1)} GMAC/s` : 'n/a');

/** Prints the speedup (a) with the profiles of both graphs and the MAC rates (g). */
export function printQuantizedSpeedup(pkg: ModelPackage, figures: SpeedupFigures, target: number): void {
  for (const workload of figures.workloads) {
    const speedup = workload.float32Ms / workload.quantizedMs;
    console.log(
      `  ${workload.label.padEnd(17)} ${figures.quantizedFile} ${workload.quantizedMs.toFixed(2)} ms, float32 ${workload.float32Ms.toFixed(2)} ms, ` +
        `speedup ${speedup.toFixed(2)}x (target ${target}x${speedup >= target ? ', met' : ', missed'})`,
    );
  }
  console.log(`  load average after the runs: ${figures.loadAverage}`);
  printProfile(figures.quantizedFile, figures.profiles.get(QUANTIZED)!);
  printProfile(FLOAT32, figures.profiles.get(FLOAT32)!);
  const quantized = figures.profiles.get(QUANTIZED)!;
  const float32 = figures.profiles.get(FLOAT32)!;
  const { integer, float } = matmulTotals(quantized);
  const other = quantized.kernelMicroseconds - integer.microseconds - float.microseconds;
  const percent = (part: number, whole: number): string => `${((100 * part) / whole).toFixed(1)}%`;
  console.log(
    `  ${figures.quantizedFile} kernel time: integer matmuls ${percent(integer.microseconds, quantized.kernelMicroseconds)}, ` +
      `float32 matmuls ${percent(float.microseconds, quantized.kernelMicroseconds)}, everything else ${percent(other, quantized.kernelMicroseconds)}`,
  );
  // Amdahl's law: weight matmuls that took no time at all would leave the rest of the float32 graph.
  const bound = float32.kernelMicroseconds / (float32.kernelMicroseconds - float32.weightMatmuls.microseconds);
  console.log(
    `  float32 kernel time: weight matmuls ${percent(float32.weightMatmuls.microseconds, float32.kernelMicroseconds)}, attention matmuls ` +
      `${percent(float32.activationMatmuls.microseconds, float32.kernelMicroseconds)}, so faster weight matmuls alone can give at most ${bound.toFixed(2)}x`,
  );

  console.log('\n(g) multiply-accumulates per second in the matmuls, 1 thread:');
  const cpu = readCpuInfo();
  const peak = estimatePeakMacRate(cpu);
  for (const workload of figures.workloads) {
    const macs = forwardMacs(pkg, workload.batch, workload.tokens);
    const total = macs.bitLinear + macs.attention;
    console.log(
      `  ${workload.label.padEnd(17)} ${(macs.bitLinear / 1e6).toFixed(0)} M BitLinear + ${(macs.attention / 1e6).toFixed(0)} M attention MACs ` +
        `in ${workload.quantizedMs.toFixed(2)} ms: ${gmacs(total, workload.quantizedMs * 1000)} over the whole run`,
    );
  }
  console.log(`  inside the kernels (profile of 1 x 400): integer matmuls ${(integer.macs / 1e6).toFixed(0)} M MACs at ${gmacs(integer.macs, integer.microseconds)}, float32 matmuls ${(float.macs / 1e6).toFixed(0)} M MACs at ${gmacs(float.macs, float.microseconds)}`);
  if (!peak || !cpu.clockMhz) {
    console.log(`  peak: no estimate for ${cpu.modelName} (flags ${cpu.kernelFlags.join(' ') || 'none'})`);
    return;
  }
  const int8Peak = (peak.int8PerCycle * cpu.clockMhz) / 1000;
  const float32Peak = (peak.float32PerCycle * cpu.clockMhz) / 1000;
  console.log(`  estimated peak per core at ${cpu.clockMhz.toFixed(0)} MHz: int8 ${int8Peak.toFixed(1)} GMAC/s, float32 ${float32Peak.toFixed(1)} GMAC/s (${peak.basis})`);
  if (integer.microseconds > 0) console.log(`  integer matmul kernels reach ${((100 * integer.macs) / integer.microseconds / 1000 / int8Peak).toFixed(1)}% of the int8 peak`);
  if (float.microseconds > 0) console.log(`  float32 matmul kernels reach ${((100 * float.macs) / float.microseconds / 1000 / float32Peak).toFixed(1)}% of the float32 peak`);
}
