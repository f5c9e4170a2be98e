import { spawnSync } from 'node:child_process';
import { PYTHON } from './model-formats';
import type { WorkloadLatency } from './quantized-speedup';

/** Median times in ms of one torch mode, as training/bench_torch.py prints them. */
interface TorchModeTimes {
  singleMs: number;
  batchMs: number;
}

/** The JSON object that training/bench_torch.py prints. */
export interface TorchFigures {
  torch: string;
  threads: number;
  weights: string;
  runs: number;
  singleTokens: number;
  batchShape: number[];
  modes: { float32: TorchModeTimes; fakeQuant: TorchModeTimes };
  prefixScoringMs?: number;
  prefixScoringPasses?: number;
}

/**
 * Runs training/bench_torch.py with Debian's python3 and one thread. Returns null, after printing
 * why, when python3 or torch is missing or the script fails.
 */
export function measureTorchReference(modelDir: string, repoRoot: string, runs: number): TorchFigures | null {
  const probe = spawnSync(PYTHON, ['-c', 'import torch'], { cwd: repoRoot, encoding: 'utf8' });
  if (probe.error) {
    console.log(`  skipped: ${PYTHON} could not be started (${probe.error.message})`);
    return null;
  }
  if (probe.status !== 0) {
    console.log(`  skipped: ${PYTHON} cannot import torch (${probe.stderr.trim().split('\n').pop()}); install python3-torch`);
    return null;
  }

  const args = ['-m', 'training.bench_torch', modelDir, '--threads', '1', '--runs', String(runs), '--prefix-runs', '1'];
  const result = spawnSync(PYTHON, args, { cwd: repoRoot, encoding: 'utf8' });
  if (result.status !== 0) {
    console.log(`  skipped: training.bench_torch failed: ${(result.stderr || String(result.error)).trim().split('\n').pop()}`);
    return null;
  }
  return JSON.parse(result.stdout.trim().split('\n').pop()!) as TorchFigures;
}

/** Prints torch's times against the quantized ONNX graph's times of the same shapes, from the same bench run. */
export function printTorchReference(figures: TorchFigures, onnx: WorkloadLatency[], target: number): void {
  const [single, batch] = onnx;
  console.log(`  torch ${figures.torch}, ${figures.threads} thread, weights: ${figures.weights}, median of ${figures.runs} forward passes`);
  for (const [mode, times] of Object.entries(figures.modes)) {
    for (const [label, torchMs, onnxWorkload] of [
      [single.label, times.singleMs, single],
      [batch.label, times.batchMs, batch],
    ] as const) {
      const ratio = torchMs / onnxWorkload.quantizedMs;
      const verdict = mode === 'float32' ? ` (target ${target}x${ratio >= target ? ', met' : ', missed'})` : '';
      console.log(`  ${mode.padEnd(9)} ${label.padEnd(17)} torch ${torchMs.toFixed(2)} ms, onnxruntime ${onnxWorkload.quantizedMs.toFixed(2)} ms, ratio ${ratio.toFixed(2)}x${verdict}`);
    }
  }
  if (figures.prefixScoringMs !== undefined) {
    console.log(
      `  per-residue scoring of 1 x 400 without a cache: ${figures.prefixScoringPasses} torch passes over growing prefixes ${figures.prefixScoringMs.toFixed(0)} ms, ` +
        `one causal onnxruntime pass ${single.quantizedMs.toFixed(2)} ms, ratio ${(figures.prefixScoringMs / single.quantizedMs).toFixed(0)}x`,
    );
  }
}
