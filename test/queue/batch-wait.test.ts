import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Prediction } from '../../src/contracts/prediction';
import { createLogger } from '../../src/log';
import { JobProcessor, type Predictor } from '../../src/queue/processor';
import { databaseFile, Store } from '../../src/store';
import { fakePrediction, waitFor } from '../intake/helpers';
import { testProcessorOptions } from '../support/processor';

/** Creates a predictor that records the sequences of each call. */
function recordingPredictor(): Predictor & { calls: string[][] } {
  const predictor = {
    modelId: 'test-model',
    calls: [] as string[][],
    predict(residues: string[]): Promise<Prediction[]> {
      predictor.calls.push(residues);
      return Promise.resolve(residues.map(() => fakePrediction()));
    },
  };
  return predictor;
}

describe('batch wait', () => {
  let folder: string;
  let store: Store;
  let processor: JobProcessor | null = null;
  let inputs = 0;

  beforeEach(() => {
    folder = mkdtempSync(path.join(os.tmpdir(), 'bitnet-edge-batch-wait-'));
    store = new Store({ file: databaseFile(path.join(folder, 'data')), logger: createLogger('silent') });
    store.open();
  });

  afterEach(async () => {
    await processor?.stop();
    processor = null;
    store.close();
    rmSync(folder, { recursive: true, force: true });
  });

  function startProcessor(predictor: Predictor, batchWaitMs: number): JobProcessor {
    processor = new JobProcessor(testProcessorOptions(store, predictor, { batchWaitMs }));
    processor.start();
    return processor;
  }

  /** Stores one request of one sequence, as an MQTT request without an id would arrive. */
  function enqueue(residues: string): void {
    inputs += 1;
    store.enqueueInput(
      { source: 'cli', inputKey: `request-${inputs}`, requestId: null, origin: 'test', reply: null },
      [{ recordId: `r${inputs}`, recordIndex: 0, description: 'test protein', sequence: { residues, sequenceHash: `hash-${inputs}`, changes: [] } }],
      [],
      [],
    );
  }

  test('collects requests that arrive while waiting', async () => {
    const predictor = recordingPredictor();
    const started = startProcessor(predictor, 60_000);
    enqueue('MKVLAAGGHHWQ');
    started.notify();
    // The first job is claimed and waits for three more, which arrive one by one.
    for (const residues of ['MSTNPKPQRKTK', 'MADEEKLPPGWE', 'MPPQRSTVWYAC']) {
      await new Promise((resolve) => setTimeout(resolve, 30));
      enqueue(residues);
      started.notify();
    }

    await waitFor(() => predictor.calls.length > 0, 'the first model call');
    expect(predictor.calls).toEqual([['MKVLAAGGHHWQ', 'MSTNPKPQRKTK', 'MADEEKLPPGWE', 'MPPQRSTVWYAC']]);
  });

  test('runs a partial batch after the wait', async () => {
    const predictor = recordingPredictor();
    const started = startProcessor(predictor, 50);
    enqueue('MKVLAAGGHHWQ');
    started.notify();

    await waitFor(() => predictor.calls.length > 0, 'the model call after the wait');
    expect(predictor.calls).toEqual([['MKVLAAGGHHWQ']]);
  });

  test('runs at once without a wait', async () => {
    const predictor = recordingPredictor();
    startProcessor(predictor, 0);
    enqueue('MKVLAAGGHHWQ');
    await waitFor(() => predictor.calls.length > 0, 'the first model call');
    enqueue('MSTNPKPQRKTK');

    await waitFor(() => predictor.calls.length > 1, 'the second model call');
    expect(predictor.calls).toEqual([['MKVLAAGGHHWQ'], ['MSTNPKPQRKTK']]);
  });
});
