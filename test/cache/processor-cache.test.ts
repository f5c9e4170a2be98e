import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ResultCache } from '../../src/cache/result-cache';
import type { Prediction } from '../../src/contracts/prediction';
import type { JobOutcome } from '../../src/contracts/store';
import { createLogger } from '../../src/log';
import { JobProcessor, type Predictor } from '../../src/queue/processor';
import { databaseFile, Store } from '../../src/store';
import { fakePrediction, waitFor } from '../intake/helpers';
import { testProcessorOptions } from '../support/processor';

const SEQUENCE = { residues: 'MKVLAAGGHHWQ', sequenceHash: 'hash-repeated', changes: [] };

/** The real Store with a count of result lookups, so a test can tell which tier served a job. */
class CountingStore extends Store {
  lookups = 0;

  override findCachedPrediction(sequenceHash: string, modelId: string): Prediction | null {
    this.lookups += 1;
    return super.findCachedPrediction(sequenceHash, modelId);
  }
}

function countingPredictor(): Predictor & { calls: number } {
  const predictor = {
    modelId: 'test-model',
    calls: 0,
    predict(residues: string[]): Promise<Prediction[]> {
      predictor.calls += residues.length;
      return Promise.resolve(residues.map(() => fakePrediction()));
    },
  };
  return predictor;
}

describe('processor memory cache', () => {
  let folder: string;
  let store: CountingStore;
  let processor: JobProcessor | null = null;
  let inputCount = 0;

  beforeEach(() => {
    folder = mkdtempSync(path.join(os.tmpdir(), 'bitnet-edge-cache-'));
    store = new CountingStore({ file: databaseFile(path.join(folder, 'data')), logger: createLogger('silent') });
    store.open();
    inputCount = 0;
  });

  afterEach(async () => {
    await processor?.stop();
    processor = null;
    store.close();
    rmSync(folder, { recursive: true, force: true });
  });

  function startProcessor(predictor: Predictor, resultCache?: ResultCache): void {
    processor = new JobProcessor(testProcessorOptions(store, predictor, { resultCache }));
    processor.start();
  }

  async function stopProcessor(): Promise<void> {
    await processor?.stop();
    processor = null;
  }

  /** Enqueues the repeated sequence as a new input and waits for its job to finish. */
  async function runRepeatedSequence(): Promise<JobOutcome> {
    inputCount += 1;
    const inputKey = `input-${inputCount}`;
    store.enqueueInput(
      { source: 'cli', inputKey, requestId: null, origin: 'test', reply: null },
      [{ recordId: 'p1', recordIndex: 0, description: 'test protein', sequence: SEQUENCE }],
      [],
      [],
    );
    processor?.notify();
    return waitFor(() => {
      const input = store.findInputByKey(inputKey);
      const outcome = input === null ? undefined : store.inputOutcomes(input.id)[0];
      return outcome?.status === 'done' ? outcome : undefined;
    }, `job of ${inputKey} to finish`);
  }

  test('repeated sequence served from memory', async () => {
    const predictor = countingPredictor();
    const cache = new ResultCache({ maxBytes: 1_000_000 });
    startProcessor(predictor, cache);

    const first = await runRepeatedSequence();
    expect(first.cached).toBe(false);
    expect(predictor.calls).toBe(1);
    expect(cache.stats.entries).toBe(1);
    const lookupsAfterFirst = store.lookups;

    const second = await runRepeatedSequence();
    expect(second.cached).toBe(true);
    expect(second.prediction).toEqual(first.prediction);
    expect(cache.stats.hits).toBe(1);
    expect(store.lookups).toBe(lookupsAfterFirst);
    expect(predictor.calls).toBe(1);
  });

  test('store hit fills memory', async () => {
    const predictor = countingPredictor();
    startProcessor(predictor);
    await runRepeatedSequence();
    await stopProcessor();

    const cache = new ResultCache({ maxBytes: 1_000_000 });
    startProcessor(predictor, cache);
    const lookupsBefore = store.lookups;

    const fromStore = await runRepeatedSequence();
    expect(fromStore.cached).toBe(true);
    expect(store.lookups).toBe(lookupsBefore + 1);
    expect(cache.stats.misses).toBe(1);
    expect(cache.stats.entries).toBe(1);

    const fromMemory = await runRepeatedSequence();
    expect(fromMemory.cached).toBe(true);
    expect(store.lookups).toBe(lookupsBefore + 1);
    expect(cache.stats.hits).toBe(1);
    expect(predictor.calls).toBe(1);
  });

  test('disabled cache asks the store', async () => {
    const predictor = countingPredictor();
    const cache = new ResultCache({ maxBytes: 0 });
    startProcessor(predictor, cache);

    await runRepeatedSequence();
    const lookupsAfterFirst = store.lookups;
    const second = await runRepeatedSequence();

    expect(second.cached).toBe(true);
    expect(store.lookups).toBe(lookupsAfterFirst + 1);
    expect(cache.stats.entries).toBe(0);
    expect(cache.stats.hits).toBe(0);
    expect(predictor.calls).toBe(1);
  });
});
