import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Prediction } from '../../src/contracts/prediction';
import { createLogger } from '../../src/log';
import { JobProcessor, type Predictor } from '../../src/queue/processor';
import { databaseFile, Store, type CompletedJob } from '../../src/store';
import { fakePrediction, waitFor } from '../intake/helpers';
import { testProcessorOptions } from '../support/processor';

/** A store that counts its commits of results and can reject the next batch commits. */
class CountingStore extends Store {
  batchCommits: number[] = [];
  singleCommits = 0;
  failBatches = 0;

  override completeJobs(items: CompletedJob[]): void {
    if (this.failBatches > 0) {
      this.failBatches -= 1;
      throw new Error('disk I/O error');
    }
    this.batchCommits.push(items.length);
    super.completeJobs(items);
  }

  override completeJob(...args: Parameters<Store['completeJob']>): void {
    this.singleCommits += 1;
    super.completeJob(...args);
  }
}

const predictor: Predictor = {
  modelId: 'test-model',
  predict: (residues: string[]): Promise<Prediction[]> => Promise.resolve(residues.map(() => fakePrediction())),
};

describe('batch result commits', () => {
  let folder: string;
  let store: CountingStore;
  let processor: JobProcessor | null = null;

  beforeEach(() => {
    folder = mkdtempSync(path.join(os.tmpdir(), 'bitnet-edge-commit-'));
    store = new CountingStore({ file: databaseFile(path.join(folder, 'data')), logger: createLogger('silent') });
    store.open();
  });

  afterEach(async () => {
    await processor?.stop();
    processor = null;
    store.close();
    rmSync(folder, { recursive: true, force: true });
  });

  function run(records: number): void {
    store.enqueueInput(
      { source: 'cli', inputKey: 'batch', requestId: null, origin: 'test', reply: null },
      Array.from({ length: records }, (_, index) => ({
        recordId: `p${index}`,
        recordIndex: index,
        description: 'test protein',
        sequence: { residues: `MKTAYIAKQR${'A'.repeat(index)}`, sequenceHash: `hash-${index}`, changes: [] },
      })),
      [],
      [],
    );
    processor = new JobProcessor(testProcessorOptions(store, predictor));
    processor.start();
  }

  test('one transaction per batch', async () => {
    run(10);
    await waitFor(() => store.countJobsByStatus().done === 10, 'ten results');

    expect(store.batchCommits).toEqual([4, 4, 2]);
    expect(store.singleCommits).toBe(0);
    expect(store.countOutbox()).toBe(10);
  });

  test('single commits after a failed batch', async () => {
    store.failBatches = 1;
    run(6);
    await waitFor(() => store.countJobsByStatus().done === 6, 'six results');

    // The first batch of 4 fell back to single commits. The second batch of 2 went through whole.
    expect(store.singleCommits).toBe(4);
    expect(store.batchCommits).toEqual([2]);
    expect(store.countOutbox()).toBe(6);
    expect(store.countJobsByStatus()).toEqual({ pending: 0, running: 0, done: 6, failed: 0 });
  });
});
