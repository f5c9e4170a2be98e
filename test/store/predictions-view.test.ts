import { spawnSync } from 'node:child_process';
import Database from 'better-sqlite3';
import type { PredictionViewRecord } from '../../src/store';
import { createStoreFixture, jobResult, mqttInput, newJob, samplePrediction, type StoreFixture } from './fixtures';

const VIEW_COLUMNS = [
  'result_id',
  'created_at',
  'source',
  'request_id',
  'record_id',
  'origin',
  'sequence_hash',
  'length',
  'localization',
  'top_go_terms',
  'function',
  'log_likelihood',
  'cached',
  'latency_ms',
  'model_id',
  'parent_record_id',
  'orf_strand',
  'orf_frame',
  'orf_start',
  'orf_end',
  'genetic_code',
];

function sqlite3Available(): boolean {
  return spawnSync('sqlite3', ['-version'], { encoding: 'utf8' }).status === 0;
}

describe('predictions view', () => {
  let fixture: StoreFixture;

  beforeEach(() => {
    fixture = createStoreFixture();
    fixture.store.open();

    const { store } = fixture;
    store.enqueueInput(mqttInput('a'), [newJob(0, 'MKTAYIAKQR'), newJob(1, 'MSTNPKPQRK')], [], []);
    const [first, second] = store.claimPendingJobs(2);
    store.completeJob(first.id, jobResult(samplePrediction()), []);

    // No localization above threshold and no function head: the view falls back to the top label.
    const sparse = samplePrediction();
    sparse.localization.predicted = [];
    delete sparse.function;
    store.completeJob(second.id, jobResult(sparse, true), []);
  });

  afterEach(() => {
    fixture.cleanup();
  });

  function queryView(): PredictionViewRecord[] {
    const db = new Database(fixture.file, { readonly: true });
    try {
      return db.prepare<[], PredictionViewRecord>('SELECT * FROM predictions ORDER BY result_id').all();
    } finally {
      db.close();
    }
  }

  test('returns one row per result', () => {
    const rows = queryView();
    expect(rows).toHaveLength(2);
    expect(Object.keys(rows[0])).toEqual(VIEW_COLUMNS);
  });

  test('flattens the prediction JSON', () => {
    const [full, sparse] = queryView();

    expect(full).toMatchObject({
      source: 'mqtt',
      request_id: 'request-a',
      record_id: 'P0',
      origin: 'bitnet-edge/pi/request/predict',
      sequence_hash: 'hash-MKTAYIAKQR',
      length: 10,
      localization: 'nucleus, cytoplasm',
      top_go_terms: 'GO:0005634, GO:0003677',
      function: 'transferase',
      log_likelihood: -120.5,
      cached: 0,
      latency_ms: 42.5,
      model_id: 'model-a',
    });
    expect(full.created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

    expect(sparse.localization).toBe('nucleus');
    expect(sparse.function).toBeNull();
    expect(sparse.cached).toBe(1);
  });

  test('parses in the sqlite3 CLI', () => {
    if (!sqlite3Available()) {
      console.warn('sqlite3 CLI not installed: skipped the CLI check of the predictions view');
      return;
    }
    fixture.store.close();

    const output = spawnSync('sqlite3', ['-readonly', fixture.file, 'SELECT record_id, localization FROM predictions ORDER BY result_id'], {
      encoding: 'utf8',
    });
    expect(output.stderr).toBe('');
    expect(output.stdout).toBe('P0|nucleus, cytoplasm\nP1|nucleus\n');
  });
});
