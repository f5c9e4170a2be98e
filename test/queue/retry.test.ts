import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Prediction } from '../../src/contracts/prediction';
import { createLogger } from '../../src/log';
import { JobProcessor, retryBackoffMs, type Predictor } from '../../src/queue/processor';
import { databaseFile, Store } from '../../src/store';
import { fakePrediction, sleep, waitFor } from '../intake/helpers';
import { testProcessorOptions } from '../support/processor';

const POISON = 'MPOISONPOISONKK';

/** Creates a predictor that fails every call whose batch contains the poison sequence, like a worker that crashes on one input. */
function poisonPredictor(): Predictor & { calls: string[][] } {
  const predictor = {
    modelId: 'test-model',
    calls: [] as string[][],
    predict(residues: string[]): Promise<Prediction[]> {
      predictor.calls.push(residues);
      if (residues.includes(POISON)) return Promise.reject(new Error('inference worker exited with code 134'));
      return Promise.resolve(residues.map(() => fakePrediction()));
    },
  };
  return predictor;
}

interface JobState {
  recordId: string;
  status: string;
  attempts: number;
  errorCode: string | null;
  retryAfter: string | null;
}

describe('job retry', () => {
  let folder: string;
  let store: Store;
  let processor: JobProcessor | null = null;
  let now: Date;

  beforeEach(() => {
    folder = mkdtempSync(path.join(os.tmpdir(), 'bitnet-edge-retry-'));
    now = new Date('2024-05-01T12:00:00.000Z');
    store = new Store({ file: databaseFile(path.join(folder, 'data')), logger: createLogger('silent'), clock: () => now });
    store.open();
  });

  afterEach(async () => {
    await processor?.stop();
    processor = null;
    store.close();
    rmSync(folder, { recursive: true, force: true });
  });

  function startProcessor(predictor: Predictor, options: { maxAttempts: number; retryBackoffMs?: number; retryBackoffMaxMs?: number }): void {
    processor = new JobProcessor(testProcessorOptions(store, predictor, { clock: () => now, ...options }));
    processor.start();
  }

  /** Stores one input with the given sequences as records p0, p1, and so on. */
  function enqueue(sequences: string[]): void {
    store.enqueueInput(
      { source: 'cli', inputKey: 'retry', requestId: null, origin: 'test', reply: null },
      sequences.map((residues, index) => ({
        recordId: `p${index}`,
        recordIndex: index,
        description: 'test protein',
        sequence: { residues, sequenceHash: `hash-${index}`, changes: [] },
      })),
      [],
      [],
    );
  }

  /** Reads the jobs through a second connection, as an operator with the sqlite3 tool would. */
  function jobStates(): JobState[] {
    const db = new Database(store.file, { readonly: true });
    try {
      return db
        .prepare(
          `SELECT record_id AS recordId, status, attempts, error_code AS errorCode, retry_after AS retryAfter
           FROM jobs ORDER BY record_index`,
        )
        .all() as JobState[];
    } finally {
      db.close();
    }
  }

  function stateOf(recordId: string): JobState {
    const state = jobStates().find((job) => job.recordId === recordId);
    if (state === undefined) throw new Error(`no job ${recordId}`);
    return state;
  }

  test('failed batch quarantines only the culprit', async () => {
    enqueue(['MKVLAAGGHHWQ', POISON, 'MSTNPKPQRKTK', 'MADEEKLPPGWE']);
    const predictor = poisonPredictor();
    startProcessor(predictor, { maxAttempts: 3 });

    await waitFor(() => stateOf('p1').status === 'failed', 'the poison job to be quarantined');
    const states = jobStates();

    expect(states.map((job) => job.status)).toEqual(['done', 'failed', 'done', 'done']);
    expect(states[1].errorCode).toBe('QUARANTINED');
    expect(states[1].attempts).toBe(3);
    for (const index of [0, 2, 3]) expect(states[index].attempts).toBe(1);
    // The batch of four, then each job alone, then the poison job alone twice more.
    expect(predictor.calls.map((call) => call.length)).toEqual([4, 1, 1, 1, 1, 1, 1]);
  });

  test('retry waits for exponential backoff', async () => {
    enqueue([POISON]);
    const predictor = poisonPredictor();
    startProcessor(predictor, { maxAttempts: 4, retryBackoffMs: 1000, retryBackoffMaxMs: 1500 });

    await waitFor(() => stateOf('p0').retryAfter !== null, 'the first retry time');
    expect(stateOf('p0').status).toBe('pending');
    expect(stateOf('p0').retryAfter).toBe('2024-05-01T12:00:01.000Z');

    // The job stays pending while the clock has not reached its retry time.
    await sleep(200);
    expect(predictor.calls).toHaveLength(1);

    now = new Date('2024-05-01T12:00:01.000Z');
    await waitFor(() => predictor.calls.length === 2 && stateOf('p0').status === 'pending', 'the second attempt');
    // 2,000 ms would be twice the first wait; the limit is 1,500 ms.
    expect(stateOf('p0').retryAfter).toBe('2024-05-01T12:00:02.500Z');
    expect(stateOf('p0').attempts).toBe(2);

    await sleep(200);
    expect(predictor.calls).toHaveLength(2);

    now = new Date('2024-05-01T12:00:02.500Z');
    await waitFor(() => predictor.calls.length === 3 && stateOf('p0').status === 'pending', 'the third attempt');
    expect(stateOf('p0').retryAfter).toBe('2024-05-01T12:00:04.000Z');

    now = new Date('2024-05-01T12:00:04.000Z');
    await waitFor(() => stateOf('p0').status === 'failed', 'the quarantine');
    expect(stateOf('p0').errorCode).toBe('QUARANTINED');
    expect(predictor.calls).toHaveLength(4);
  });

  test('waiting job does not block others', async () => {
    enqueue([POISON]);
    const predictor = poisonPredictor();
    startProcessor(predictor, { maxAttempts: 3, retryBackoffMs: 60_000 });
    await waitFor(() => stateOf('p0').retryAfter !== null, 'the first retry time');

    store.enqueueInput(
      { source: 'cli', inputKey: 'later', requestId: null, origin: 'test', reply: null },
      [{ recordId: 'q0', recordIndex: 0, description: 'test protein', sequence: { residues: 'MKVLAAGGHHWQ', sequenceHash: 'hash-q0', changes: [] } }],
      [],
      [],
    );
    processor?.notify();

    await waitFor(() => stateOf('q0').status === 'done', 'the later job');
    expect(stateOf('p0').status).toBe('pending');
    expect(stateOf('p0').attempts).toBe(1);
  });
});

describe('retryBackoffMs', () => {
  test.each([
    [1, 1000, 60_000, 1000],
    [2, 1000, 60_000, 2000],
    [3, 1000, 60_000, 4000],
    [8, 1000, 60_000, 60_000],
    [3, 0, 60_000, 0],
  ])('attempt %i with base %i and limit %i waits %i ms', (attempts, baseMs, maxMs, expected) => {
    expect(retryBackoffMs(attempts, baseMs, maxMs)).toBe(expected);
  });
});
