import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Prediction } from '../../src/contracts/prediction';
import { createLogger } from '../../src/log';
import { JobProcessor, type Predictor } from '../../src/queue/processor';
import { databaseFile, Store } from '../../src/store';
import { fakePrediction, waitFor } from '../intake/helpers';
import { TEST_TOPICS, testProcessorOptions } from '../support/processor';

/** Creates a predictor that throws for its first `failures` calls, like a worker that crashes and restarts. */
function flakyPredictor(failures: number): Predictor & { calls: number } {
  const predictor = {
    modelId: 'test-model',
    calls: 0,
    predict(residues: string[]): Promise<Prediction[]> {
      predictor.calls += 1;
      if (predictor.calls <= failures) return Promise.reject(new Error('inference worker exited with code 1'));
      return Promise.resolve(residues.map(() => fakePrediction()));
    },
  };
  return predictor;
}

describe('job quarantine', () => {
  let folder: string;
  let store: Store;
  let processor: JobProcessor | null = null;
  let idleCalls = 0;

  beforeEach(() => {
    folder = mkdtempSync(path.join(os.tmpdir(), 'bitnet-edge-quarantine-'));
    store = new Store({ file: databaseFile(path.join(folder, 'data')), logger: createLogger('silent') });
    store.open();
    idleCalls = 0;
  });

  afterEach(async () => {
    await processor?.stop();
    processor = null;
    store.close();
    rmSync(folder, { recursive: true, force: true });
  });

  function startProcessor(predictor: Predictor, maxAttempts: number): JobProcessor {
    processor = new JobProcessor(
      testProcessorOptions(store, predictor, {
        maxAttempts,
        onIdle: () => {
          idleCalls += 1;
        },
      }),
    );
    processor.start();
    return processor;
  }

  function enqueueOneJob(): number {
    const sequence = { residues: 'MKVLAAGGHHWQ', sequenceHash: 'hash-quarantine', changes: [] };
    const result = store.enqueueInput(
      { source: 'cli', inputKey: 'quarantine', requestId: null, origin: 'test', reply: null },
      [{ recordId: 'p1', recordIndex: 0, description: 'test protein', sequence }],
      [],
      [],
    );
    return result.jobIds[0];
  }

  function jobOutcome(): { status: string; errorCode: string | null; errorMessage: string | null } | undefined {
    const input = store.findInputByKey('quarantine');
    return input === null ? undefined : store.inputOutcomes(input.id)[0];
  }

  test('transient failure is retried and succeeds', async () => {
    enqueueOneJob();
    const predictor = flakyPredictor(1);
    startProcessor(predictor, 3);

    const outcome = await waitFor(jobOutcome, 'the job to finish');
    expect(outcome.status).toBe('done');
    expect(outcome.errorCode).toBeNull();
    expect(predictor.calls).toBe(2);
  });

  test('repeated failure ends in QUARANTINED', async () => {
    enqueueOneJob();
    const predictor = flakyPredictor(Number.POSITIVE_INFINITY);
    startProcessor(predictor, 3);

    const outcome = await waitFor(jobOutcome, 'the job to fail');
    expect(outcome.status).toBe('failed');
    expect(outcome.errorCode).toBe('QUARANTINED');
    expect(outcome.errorMessage).toContain('inference worker exited with code 1');
    expect(predictor.calls).toBe(3);

    const errors = store.peekOutbox(10).filter((row) => row.topic === TEST_TOPICS.errors);
    expect(errors).toHaveLength(1);
    expect(errors[0].payload).toContain('QUARANTINED');
  });

  test('maxAttempts of one fails at the first error', async () => {
    enqueueOneJob();
    const predictor = flakyPredictor(Number.POSITIVE_INFINITY);
    startProcessor(predictor, 1);

    const outcome = await waitFor(jobOutcome, 'the job to fail');
    expect(outcome.errorCode).toBe('QUARANTINED');
    expect(predictor.calls).toBe(1);
  });

  test('idle loop calls onIdle', async () => {
    startProcessor(flakyPredictor(0), 3);
    await waitFor(() => idleCalls >= 2, 'two idle calls');
    expect(idleCalls).toBeGreaterThanOrEqual(2);
  });
});
