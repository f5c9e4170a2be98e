import type { Prediction } from '../contracts/prediction';

/** Counters of a ResultCache since it was created. */
export interface ResultCacheStats {
  hits: number;
  misses: number;
  entries: number;
  /** Estimated size of all entries, in bytes. */
  bytes: number;
  evictions: number;
}

export interface ResultCacheOptions {
  /** Upper bound of the estimated size of all entries, in bytes. 0 disables the cache. */
  maxBytes: number;
}

interface Entry {
  prediction: Prediction;
  bytes: number;
}

/**
 * Builds the cache key of a prediction. `optionsKey` is a stable serialization of the request
 * options that change the model output, so results of different options never share an entry.
 */
export function resultCacheKey(modelId: string, sequenceHash: string, optionsKey: string): string {
  return `${modelId}:${sequenceHash}:${optionsKey}`;
}

/**
 * Estimates the memory of one entry in bytes: two bytes per UTF-16 code unit of the key and of
 * the prediction's JSON. V8 keeps the parsed object, not the JSON, so this is an estimate of the
 * same order, not the heap size.
 */
export function estimateEntryBytes(key: string, prediction: Prediction): number {
  return (key.length + JSON.stringify(prediction).length) * 2;
}

/**
 * In-memory least-recently-used cache of predictions, bounded by the estimated size of its
 * entries. The Map keeps insertion order, so a hit moves its entry to the end and eviction
 * removes from the front. An entry larger than maxBytes is not stored.
 *
 * Entries keep the Prediction object itself, and get() returns that same object, so callers
 * must not mutate it. Keeping the object avoids a JSON.parse on every hit, which costs far more
 * than the lookup (the cache benchmark in src/bench prints both).
 */
export class ResultCache {
  private readonly maxBytes: number;
  private readonly entries = new Map<string, Entry>();
  private totalBytes = 0;
  private hits = 0;
  private misses = 0;
  private evictions = 0;

  constructor(options: ResultCacheOptions) {
    this.maxBytes = options.maxBytes;
  }

  /** True when maxBytes is above 0. A disabled cache stores nothing and counts every get as a miss. */
  get enabled(): boolean {
    return this.maxBytes > 0;
  }

  /** Returns the cached prediction and marks it most recently used, or undefined on a miss. */
  get(key: string): Prediction | undefined {
    const entry = this.entries.get(key);
    if (!entry) {
      this.misses += 1;
      return undefined;
    }

    this.entries.delete(key);
    this.entries.set(key, entry);
    this.hits += 1;
    return entry.prediction;
  }

  /** Stores a prediction as the most recently used entry and evicts the least recently used ones beyond maxBytes. */
  set(key: string, prediction: Prediction): void {
    const bytes = estimateEntryBytes(key, prediction);
    if (bytes > this.maxBytes) return;

    const previous = this.entries.get(key);
    if (previous) {
      this.entries.delete(key);
      this.totalBytes -= previous.bytes;
    }
    this.entries.set(key, { prediction, bytes });
    this.totalBytes += bytes;
    this.evictOverflow();
  }

  get stats(): ResultCacheStats {
    return {
      hits: this.hits,
      misses: this.misses,
      entries: this.entries.size,
      bytes: this.totalBytes,
      evictions: this.evictions,
    };
  }

  private evictOverflow(): void {
    for (const [key, entry] of this.entries) {
      if (this.totalBytes <= this.maxBytes) return;
      this.entries.delete(key);
      this.totalBytes -= entry.bytes;
      this.evictions += 1;
    }
  }
}
