import pino from 'pino';
import { InferenceEngine } from '../inference/engine';
import type { SessionTuning } from '../inference/protocol';
import { median, quantile } from './stats';

/** Latency figures of one engine configuration. */
export interface LatencyFigures {
  threads: number;
  runs: number;
  medianMs: number;
  p90Ms: number;
}

/** Deterministic protein-like sequence of `length` residues. */
export function syntheticProtein(length: number, seed: number): string {
  const residues = 'ACDEFGHIKLMNPQRSTVWY';
  let state = seed;
  let sequence = 'M';
  while (sequence.length < length) {
    state = (state * 1103515245 + 12345) % 2147483648;
    sequence += residues[state % residues.length];
  }
  return sequence;
}

/**
 * Measures the latency of predict() for one sequence, end to end through the worker thread
 * (tokenization, run, post-processing), after `warmUp` untimed runs.
 */
export async function measureModelLatency(
  modelDir: string,
  sequence: string,
  threads: number,
  runs: number,
  warmUp = 3,
  session: Partial<SessionTuning> = {},
): Promise<LatencyFigures> {
  const engine = new InferenceEngine({ modelDir, intraOpThreads: threads, session, logger: pino({ level: 'silent' }) });
  await engine.start();
  try {
    for (let i = 0; i < warmUp; i++) await engine.predict([sequence]);

    const timesMs: number[] = [];
    for (let i = 0; i < runs; i++) {
      const startedAt = performance.now();
      await engine.predict([sequence]);
      timesMs.push(performance.now() - startedAt);
    }
    return { threads, runs, medianMs: median(timesMs), p90Ms: quantile(timesMs, 0.9) };
  } finally {
    await engine.stop();
  }
}
