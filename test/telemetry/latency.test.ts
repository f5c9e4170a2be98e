import { LatencyWindow, nearestRank } from '../../src/telemetry/latency';
import { Metrics } from '../../src/telemetry/metrics';

describe('LatencyWindow', () => {
  test('empty window has null percentiles', () => {
    expect(new LatencyWindow().percentiles()).toEqual({ p50: null, p90: null, p99: null });
  });

  test('percentiles of 1 to 100', () => {
    const window = new LatencyWindow();
    for (let ms = 100; ms >= 1; ms -= 1) window.add(ms);
    expect(window.percentiles()).toEqual({ p50: 50, p90: 90, p99: 99 });
  });

  test('single value is every percentile', () => {
    const window = new LatencyWindow();
    window.add(7.5);
    expect(window.percentiles()).toEqual({ p50: 7.5, p90: 7.5, p99: 7.5 });
  });

  test('keeps only the latest values', () => {
    const window = new LatencyWindow(4);
    for (const ms of [1000, 1000, 1000, 1000, 1, 2, 3, 4]) window.add(ms);
    expect(window.size).toBe(4);
    expect(window.percentiles()).toEqual({ p50: 2, p90: 4, p99: 4 });
  });

  test('ignores invalid latencies', () => {
    const window = new LatencyWindow();
    window.add(Number.NaN);
    window.add(-1);
    window.add(Number.POSITIVE_INFINITY);
    expect(window.size).toBe(0);
  });

  test('rejects a zero capacity', () => {
    expect(() => new LatencyWindow(0)).toThrow('positive integer');
  });

  test('nearest rank of ten values', () => {
    const sorted = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    expect(nearestRank(sorted, 50)).toBe(5);
    expect(nearestRank(sorted, 90)).toBe(9);
    expect(nearestRank(sorted, 99)).toBe(10);
    expect(nearestRank(sorted, 0)).toBe(1);
  });
});

describe('Metrics', () => {
  test('counts and windows', () => {
    const metrics = new Metrics();
    metrics.recordReceived(3);
    metrics.recordRejected(2);
    metrics.recordDone({ queueWaitMs: 5, inferenceMs: 40, totalMs: 50, residues: 100, cached: false });
    metrics.recordDone({ queueWaitMs: 1, inferenceMs: 0, totalMs: 2, residues: 80, cached: true });
    metrics.recordFailed();

    const snapshot = metrics.snapshot();
    expect(snapshot.received).toBe(3);
    expect(snapshot.rejected).toBe(2);
    expect(snapshot.done).toBe(2);
    expect(snapshot.failed).toBe(1);
    expect(snapshot.cacheHits).toBe(1);
    expect(snapshot.residues).toBe(180);
    // The cache hit has no model run, so the inference window holds only the first job.
    expect(snapshot.latencyMs.inference).toEqual({ p50: 40, p90: 40, p99: 40 });
    expect(snapshot.latencyMs.total.p99).toBe(50);
    expect(snapshot.latencyMs.queueWait.p50).toBe(1);
  });
});
