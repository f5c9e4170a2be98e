/** Percentiles p50, p90 and p99 of a set of latencies in ms, each null when no latency was recorded. */
export interface LatencyPercentiles {
  p50: number | null;
  p90: number | null;
  p99: number | null;
}

const DEFAULT_CAPACITY = 1024;

/**
 * The most recent latencies (a ring buffer of `capacity` values) and their percentiles, by
 * the nearest-rank method: the p-th percentile is the smallest value with at least p % of
 * the values at or below it.
 */
export class LatencyWindow {
  private readonly values: number[] = [];
  private next = 0;

  constructor(private readonly capacity: number = DEFAULT_CAPACITY) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`latency window capacity must be a positive integer, got ${capacity}`);
    }
  }

  /** Adds one latency in ms. Non-finite and negative values are ignored. */
  add(latencyMs: number): void {
    if (!Number.isFinite(latencyMs) || latencyMs < 0) return;
    if (this.values.length < this.capacity) {
      this.values.push(latencyMs);
      return;
    }
    this.values[this.next] = latencyMs;
    this.next = (this.next + 1) % this.capacity;
  }

  /** Number of latencies in the window. */
  get size(): number {
    return this.values.length;
  }

  percentiles(): LatencyPercentiles {
    if (this.values.length === 0) return { p50: null, p90: null, p99: null };
    const sorted = [...this.values].sort((a, b) => a - b);
    return { p50: nearestRank(sorted, 50), p90: nearestRank(sorted, 90), p99: nearestRank(sorted, 99) };
  }
}

/** Nearest-rank percentile of an ascending, non-empty array. */
export function nearestRank(sorted: readonly number[], percentile: number): number {
  const rank = Math.ceil((percentile / 100) * sorted.length);
  const index = Math.min(sorted.length - 1, Math.max(0, rank - 1));
  return sorted[index];
}
