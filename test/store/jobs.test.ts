import Database from 'better-sqlite3';
import { JobStateError, MIGRATIONS } from '../../src/store';
import { createStoreFixture, jobResult, mqttInput, newJob, publication, samplePrediction, type StoreFixture } from './fixtures';

describe('Store jobs', () => {
  let fixture: StoreFixture;

  beforeEach(() => {
    fixture = createStoreFixture();
    fixture.store.open();
  });

  afterEach(() => {
    fixture.cleanup();
  });

  test('enqueue stores input, jobs, rejections and outbox', () => {
    const { store } = fixture;
    const result = store.enqueueInput(
      mqttInput('key-1'),
      [newJob(0, 'MKTAYIAKQR'), newJob(2, 'MSTNPKPQRK')],
      [{ recordId: 'bad', recordIndex: 1, code: 'INVALID_RESIDUE', message: 'invalid residue "1" at 4' }],
      [publication('bitnet-edge/pi/errors', '{"errors":1}')],
    );

    expect(result.inserted).toBe(true);
    expect(result.jobIds).toHaveLength(2);

    const input = store.getInput(result.inputId);
    expect(input).toEqual({
      id: result.inputId,
      source: 'mqtt',
      inputKey: 'key-1',
      requestId: 'request-key-1',
      origin: 'bitnet-edge/pi/request/predict',
      replyTopic: 'bitnet-edge/pi/response/predict',
      correlationData: 'Y29ycmVsYXRpb24=',
      status: 'open',
      jobCount: 2,
      rejectedCount: 1,
      // The stepping clock gave one second to each migration first.
      createdAt: new Date(Date.parse('2026-01-01T00:00:00.000Z') + MIGRATIONS.length * 1000).toISOString(),
    });
    expect(store.inputRejections(result.inputId)).toEqual([
      { recordId: 'bad', recordIndex: 1, code: 'INVALID_RESIDUE', message: 'invalid residue "1" at 4' },
    ]);
    expect(store.countOutbox()).toBe(1);
    expect(store.countJobsByStatus()).toEqual({ pending: 2, running: 0, done: 0, failed: 0 });
  });

  test('enqueue is idempotent by input key', () => {
    const { store } = fixture;
    const first = store.enqueueInput(mqttInput('same'), [newJob(0, 'MKTAYIAKQR'), newJob(1, 'MSTNPKPQRK')], [], [publication('t', 'p')]);
    const second = store.enqueueInput(
      mqttInput('same', { requestId: 'other' }),
      [newJob(0, 'MKTAYIAKQR'), newJob(1, 'MSTNPKPQRK'), newJob(2, 'MAAAAAAAAA')],
      [{ recordId: 'x', recordIndex: 3, code: 'EMPTY_SEQUENCE', message: 'empty' }],
      [publication('t', 'p')],
    );

    expect(second.inserted).toBe(false);
    expect(second.inputId).toBe(first.inputId);
    expect(second.jobIds).toEqual(first.jobIds);
    expect(store.countJobsByStatus().pending).toBe(2);
    expect(store.countOutbox()).toBe(1);
    expect(store.inputRejections(first.inputId)).toEqual([]);
    expect(store.getInput(first.inputId)?.requestId).toBe('request-same');
  });

  test('enqueue rolls back on a duplicate record index', () => {
    const { store } = fixture;
    expect(() => store.enqueueInput(mqttInput('dup'), [newJob(0, 'MKTAYIAKQR'), newJob(0, 'MSTNPKPQRK')], [], [publication('t', 'p')])).toThrow(
      /UNIQUE constraint failed/,
    );
    expect(store.findInputByKey('dup')).toBeNull();
    expect(store.countOutbox()).toBe(0);
  });

  test('input without jobs stays open and complete', () => {
    const { store } = fixture;
    const { inputId, jobIds } = store.enqueueInput(
      mqttInput('empty'),
      [],
      [{ recordId: 'record-0', recordIndex: 0, code: 'EMPTY_INPUT', message: 'no records' }],
      [],
    );

    expect(jobIds).toEqual([]);
    expect(store.getInput(inputId)?.status).toBe('open');
    expect(store.isInputComplete(inputId)).toBe(true);
    expect(store.listCompleteOpenInputs().map((input) => input.id)).toEqual([inputId]);
  });

  test('claim takes pending jobs oldest first', () => {
    const { store } = fixture;
    const a = store.enqueueInput(mqttInput('a'), [newJob(0, 'MKTAYIAKQR'), newJob(1, 'MSTNPKPQRK')], [], []);
    const b = store.enqueueInput(mqttInput('b'), [newJob(0, 'MAAAAAAAAA')], [], []);

    const first = store.claimPendingJobs(2);
    expect(first.map((job) => job.id)).toEqual(a.jobIds);
    expect(first[0]).toMatchObject({
      inputId: a.inputId,
      source: 'mqtt',
      requestId: 'request-a',
      origin: 'bitnet-edge/pi/request/predict',
      recordId: 'P0',
      recordIndex: 0,
      description: 'protein 0',
      residues: 'MKTAYIAKQR',
      sequenceHash: 'hash-MKTAYIAKQR',
      changes: ['removed trailing *'],
      status: 'running',
      attempts: 1,
    });

    const second = store.claimPendingJobs(5);
    expect(second.map((job) => job.id)).toEqual(b.jobIds);
    expect(store.claimPendingJobs(5)).toEqual([]);
    expect(store.countJobsByStatus()).toEqual({ pending: 0, running: 3, done: 0, failed: 0 });
  });

  test('claim rejects a negative limit', () => {
    expect(() => fixture.store.claimPendingJobs(-1)).toThrow(RangeError);
    expect(() => fixture.store.claimPendingJobs(1.5)).toThrow('limit must be a non-negative integer, got 1.5');
  });

  test('complete stores the result and outbox row', () => {
    const { store } = fixture;
    const { inputId } = store.enqueueInput(mqttInput('a'), [newJob(0, 'MKTAYIAKQR')], [], []);
    const [job] = store.claimPendingJobs(1);
    const prediction = samplePrediction();

    store.completeJob(job.id, jobResult(prediction), [publication('bitnet-edge/pi/predictions', '{"jobId":1}')]);

    expect(store.countJobsByStatus()).toEqual({ pending: 0, running: 0, done: 1, failed: 0 });
    expect(store.peekOutbox(10).map((row) => row.topic)).toEqual(['bitnet-edge/pi/predictions']);
    expect(store.isInputComplete(inputId)).toBe(true);

    const [outcome] = store.inputOutcomes(inputId);
    expect(outcome).toEqual({
      jobId: job.id,
      recordId: 'P0',
      recordIndex: 0,
      sequenceHash: 'hash-MKTAYIAKQR',
      length: 10,
      changes: ['removed trailing *'],
      status: 'done',
      prediction,
      cached: false,
      latencyMs: 42.5,
      errorCode: null,
      errorMessage: null,
      finishedAt: expect.any(String) as string,
      orf: null,
    });
  });

  test('complete twice throws JobStateError', () => {
    const { store } = fixture;
    store.enqueueInput(mqttInput('a'), [newJob(0, 'MKTAYIAKQR')], [], []);
    const [job] = store.claimPendingJobs(1);
    store.completeJob(job.id, jobResult(samplePrediction()), []);

    expect(() => store.completeJob(job.id, jobResult(samplePrediction()), [publication('t', 'p')])).toThrow(JobStateError);
    expect(() => store.completeJob(job.id, jobResult(samplePrediction()), [])).toThrow(`cannot complete job ${job.id}: its status is done`);
    expect(() => store.completeJob(9999, jobResult(samplePrediction()), [])).toThrow('cannot complete job 9999: job not found');
    expect(store.countOutbox()).toBe(0);
  });

  test('fail records code and message', () => {
    const { store } = fixture;
    const { inputId } = store.enqueueInput(mqttInput('a'), [newJob(0, 'MKTAYIAKQR'), newJob(1, 'MSTNPKPQRK')], [], []);
    const [first, second] = store.claimPendingJobs(2);

    store.failJob(first.id, 'INFERENCE_FAILED', 'inference failed: out of memory', [publication('bitnet-edge/pi/errors', '{}')]);
    expect(store.isInputComplete(inputId)).toBe(false);
    store.completeJob(second.id, jobResult(samplePrediction()), []);

    const outcomes = store.inputOutcomes(inputId);
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['failed', 'done']);
    expect(outcomes[0]).toMatchObject({ errorCode: 'INFERENCE_FAILED', errorMessage: 'inference failed: out of memory', prediction: null, latencyMs: null });
    expect(store.countJobsByStatus()).toEqual({ pending: 0, running: 0, done: 1, failed: 1 });
    expect(() => store.failJob(first.id, 'INTERNAL', 'again', [])).toThrow(`cannot fail job ${first.id}: its status is failed`);
  });

  test('outcomes leave out unfinished jobs', () => {
    const { store } = fixture;
    const { inputId } = store.enqueueInput(mqttInput('a'), [newJob(0, 'MKTAYIAKQR'), newJob(1, 'MSTNPKPQRK')], [], []);
    const [first] = store.claimPendingJobs(1);
    store.completeJob(first.id, jobResult(samplePrediction()), []);

    expect(store.inputOutcomes(inputId).map((outcome) => outcome.recordIndex)).toEqual([0]);
  });

  test('outcome pages list the finished jobs in record order', () => {
    const { store } = fixture;
    // Record indices with gaps, as rejected records leave them.
    const jobs = [9, 0, 1, 2, 4, 5, 7, 12].map((index) => newJob(index, 'MKTAYIAKQR'));
    const { inputId } = store.enqueueInput(mqttInput('paged'), jobs, [], []);
    const claimed = store.claimPendingJobs(8);
    claimed.forEach((job, position) => {
      if (position === 2) store.failJob(job.id, 'INFERENCE_FAILED', 'failed', []);
      else if (position !== 6) store.completeJob(job.id, jobResult(samplePrediction()), []);
    });

    const pages: number[][] = [];
    let last: { recordIndex: number; jobId: number } | null = null;
    for (let page = store.inputOutcomePage(inputId, null, 3); page.length > 0; page = store.inputOutcomePage(inputId, last, 3)) {
      pages.push(page.map((outcome) => outcome.jobId));
      last = page[page.length - 1];
    }

    expect(pages.map((page) => page.length)).toEqual([3, 3, 1]);
    expect(pages.flat()).toEqual(store.inputOutcomes(inputId).map((outcome) => outcome.jobId));
    expect(store.inputOutcomeCounts(inputId)).toEqual({ done: 6, failed: 1 });
    expect(store.inputOutcomeCounts(inputId + 1)).toEqual({ done: 0, failed: 0 });
  });

  test('release returns running jobs to pending', () => {
    const { store } = fixture;
    store.enqueueInput(mqttInput('a'), [newJob(0, 'MKTAYIAKQR'), newJob(1, 'MSTNPKPQRK')], [], []);
    const claimed = store.claimPendingJobs(2);
    store.completeJob(claimed[0].id, jobResult(samplePrediction()), []);

    store.releaseJobs(claimed.map((job) => job.id));

    expect(store.countJobsByStatus()).toEqual({ pending: 1, running: 0, done: 1, failed: 0 });
    const [again] = store.claimPendingJobs(5);
    expect(again.id).toBe(claimed[1].id);
    expect(again.attempts).toBe(2);
  });

  test('requeue after a crash', () => {
    const { store } = fixture;
    store.enqueueInput(mqttInput('a'), [newJob(0, 'MKTAYIAKQR'), newJob(1, 'MSTNPKPQRK'), newJob(2, 'MAAAAAAAAA')], [], []);
    const claimed = store.claimPendingJobs(2);
    store.close();

    const restarted = fixture.newStore();
    restarted.open();
    expect(restarted.countJobsByStatus()).toEqual({ pending: 1, running: 2, done: 0, failed: 0 });

    expect(restarted.requeueRunningJobs()).toBe(2);
    expect(restarted.countJobsByStatus()).toEqual({ pending: 3, running: 0, done: 0, failed: 0 });
    const reclaimed = restarted.claimPendingJobs(3);
    expect(reclaimed.map((job) => job.id).slice(0, 2)).toEqual(claimed.map((job) => job.id));
    expect(reclaimed.map((job) => job.attempts)).toEqual([2, 2, 1]);
  });

  test('requeue after a connection that never closed', () => {
    const { store } = fixture;
    store.enqueueInput(mqttInput('a'), [newJob(0, 'MKTAYIAKQR')], [], []);
    store.claimPendingJobs(1);

    // The first store stays open, as the connection of a killed process would have stayed.
    const restarted = fixture.newStore();
    restarted.open();
    expect(restarted.requeueRunningJobs()).toBe(1);
    expect(restarted.claimPendingJobs(1)).toHaveLength(1);
  });

  test('findCachedPrediction returns the latest result', () => {
    const { store } = fixture;
    store.enqueueInput(mqttInput('a'), [newJob(0, 'MKTAYIAKQR'), newJob(1, 'MKTAYIAKQR', 'again')], [], []);
    const [first, second] = store.claimPendingJobs(2);
    const older = samplePrediction();
    const newer = { ...samplePrediction(), lm: { logLikelihood: -99, perplexity: 8, scoredResidues: 10 } };

    expect(store.findCachedPrediction('hash-MKTAYIAKQR', 'model-a')).toBeNull();
    store.completeJob(first.id, jobResult(older), []);
    store.completeJob(second.id, jobResult(newer, true), []);

    expect(store.findCachedPrediction('hash-MKTAYIAKQR', 'model-a')).toEqual(newer);
    expect(store.findCachedPrediction('hash-MKTAYIAKQR', 'model-b')).toBeNull();
    expect(store.findCachedPrediction('hash-other', 'model-a')).toBeNull();
  });

  test('listCompleteOpenInputs filters by status and source', () => {
    const { store } = fixture;
    const done = store.enqueueInput(mqttInput('done'), [newJob(0, 'MKTAYIAKQR')], [], []);
    const waiting = store.enqueueInput(mqttInput('waiting'), [newJob(0, 'MSTNPKPQRK')], [], []);
    const inbox = store.enqueueInput(mqttInput('file', { source: 'inbox', origin: 'proteins.fasta', reply: null, requestId: null }), [], [], []);
    const [job] = store.claimPendingJobs(1);
    store.completeJob(job.id, jobResult(samplePrediction()), []);

    expect(store.listCompleteOpenInputs().map((input) => input.id)).toEqual([done.inputId, inbox.inputId]);
    expect(store.listCompleteOpenInputs('mqtt').map((input) => input.id)).toEqual([done.inputId]);
    expect(store.listCompleteOpenInputs('inbox')[0]).toMatchObject({ origin: 'proteins.fasta', replyTopic: null, correlationData: null });
    expect(store.isInputComplete(waiting.inputId)).toBe(false);
    expect(store.isInputComplete(9999)).toBe(false);

    store.finishInput(done.inputId, []);
    expect(store.listCompleteOpenInputs('mqtt')).toEqual([]);
  });

  test('finishInput twice returns false', () => {
    const { store } = fixture;
    const { inputId } = store.enqueueInput(mqttInput('a'), [], [], []);

    expect(store.finishInput(inputId, [publication('bitnet-edge/pi/response/predict', '{"status":"error"}')])).toBe(true);
    expect(store.finishInput(inputId, [publication('bitnet-edge/pi/response/predict', '{"status":"error"}')])).toBe(false);
    expect(store.getInput(inputId)?.status).toBe('finished');
    expect(store.countOutbox()).toBe(1);
    expect(() => store.finishInput(9999, [])).toThrow('cannot finish input 9999: input not found');
  });

  test('hostile strings are stored verbatim', () => {
    const { store } = fixture;
    const hostile = "x'); DROP TABLE jobs;--";
    const { inputId } = store.enqueueInput(
      mqttInput(hostile, { requestId: hostile, origin: hostile }),
      [{ ...newJob(0, 'MKTAYIAKQR', hostile), description: `"; DELETE FROM inputs; --` }],
      [{ recordId: hostile, recordIndex: 1, code: 'INVALID_FASTA', message: hostile }],
      [publication(hostile, hostile)],
    );
    const [job] = store.claimPendingJobs(1);
    store.failJob(job.id, hostile, hostile, []);

    expect(store.findInputByKey(hostile)?.id).toBe(inputId);
    expect(job.recordId).toBe(hostile);
    expect(job.description).toBe(`"; DELETE FROM inputs; --`);
    expect(store.inputRejections(inputId)[0].message).toBe(hostile);
    expect(store.inputOutcomes(inputId)[0]).toMatchObject({ errorCode: hostile, errorMessage: hostile });
    expect(store.peekOutbox(1)[0].topic).toBe(hostile);

    const outside = new Database(fixture.file, { readonly: true });
    try {
      const tables = outside.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all();
      expect(tables).toEqual(expect.arrayContaining(['inputs', 'jobs', 'outbox', 'rejections', 'results', 'telemetry']));
      expect(outside.prepare('SELECT count(*) FROM inputs').pluck().get()).toBe(1);
    } finally {
      outside.close();
    }
  });
});
