import pino from 'pino';
import { ResultCache, resultCacheKey } from '../cache/result-cache';
import type { Prediction } from '../contracts/prediction';
import { InferenceEngine } from '../inference/engine';
import { median } from './stats';

/** Median times of one exact cache hit, in microseconds. */
export interface CacheLatencyFigures {
  lookups: number;
  /** Size of the prediction's JSON, in UTF-16 code units. */
  predictionJsonLength: number;
  /** ResultCache.get of a present key. */
  getMedianUs: number;
  /** Key construction plus get, as the job processor does it for each job. */
  processorHitMedianUs: number;
  /** JSON.parse of the stored prediction, the cost a cache of JSON strings would add to every hit. */
  jsonParseMedianUs: number;
}

/** Runs the model once and returns its prediction, so the cache contains an entry of real size. */
export async function predictOnce(modelDir: string, sequence: string): Promise<Prediction> {
  const engine = new InferenceEngine({ modelDir, intraOpThreads: 0, logger: pino({ level: 'silent' }) });
  await engine.start();
  try {
    const [prediction] = await engine.predict([sequence]);
    return prediction;
  } finally {
    await engine.stop();
  }
}

function medianMicroseconds(lookups: number, operation: (index: number) => void): number {
  const timesUs: number[] = [];
  for (let i = 0; i < lookups; i++) {
    const startedAt = performance.now();
    operation(i);
    timesUs.push((performance.now() - startedAt) * 1000);
  }
  return median(timesUs);
}

/**
 * Measures exact cache hits in process: each lookup is timed on its own with performance.now(),
 * so the figures include the timer's own cost.
 */
export function measureCacheLatency(prediction: Prediction, lookups: number): CacheLatencyFigures {
  const cache = new ResultCache({ maxBytes: 16 * 1024 * 1024 });
  const hashes = Array.from({ length: 1000 }, (_, index) => index.toString(16).padStart(64, '0'));
  for (const hash of hashes) cache.set(resultCacheKey(prediction.modelId, hash, ''), prediction);
  const keys = hashes.map((hash) => resultCacheKey(prediction.modelId, hash, ''));
  const json = JSON.stringify(prediction);

  // Untimed warm-up so the figures measure optimized code.
  let found = 0;
  for (let i = 0; i < lookups; i++) if (cache.get(keys[i % keys.length])) found += 1;
  if (found !== lookups) throw new Error(`cache benchmark warm-up found ${found} of ${lookups} keys`);

  const getMedianUs = medianMicroseconds(lookups, (i) => cache.get(keys[i % keys.length]));
  const processorHitMedianUs = medianMicroseconds(lookups, (i) => cache.get(resultCacheKey(prediction.modelId, hashes[i % hashes.length], '')));
  const jsonParseMedianUs = medianMicroseconds(lookups, () => {
    JSON.parse(json);
  });

  return { lookups, predictionJsonLength: json.length, getMedianUs, processorHitMedianUs, jsonParseMedianUs };
}
