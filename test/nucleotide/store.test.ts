import Database from 'better-sqlite3';
import type { NewJob, OrfOrigin } from '../../src/contracts/jobs';
import { predictionMessage, responseMessage } from '../../src/queue/messages';
import { buildTopics, type PredictionMessage, type ResponseMessage } from '../../src/contracts/topics';
import { createLogger } from '../../src/log';
import { openDatabase } from '../../src/store/db';
import { MIGRATIONS } from '../../src/store/migrations';
import { createStoreFixture, jobResult, mqttInput, newJob, samplePrediction, steppingClock, type StoreFixture } from '../store/fixtures';

const ORF: OrfOrigin = {
  parentRecordId: 'contig7',
  parentRecordIndex: 2,
  orfNumber: 3,
  strand: '-',
  frame: 2,
  start: 101,
  end: 400,
  hasStopCodon: true,
  nucleotideLength: 1200,
  geneticCode: 11,
};

function orfJob(): NewJob {
  return { ...newJob(1_000_002_000_003, 'MKTAYIAKQR', 'contig7_orf3'), orf: ORF };
}

describe('ORF migration', () => {
  test('upgrade keeps older results readable', () => {
    const fixture = createStoreFixture();
    try {
      const before = MIGRATIONS.filter((migration) => migration.name !== 'ORF columns of jobs');
      const { db } = openDatabase(fixture.file, createLogger('silent'), steppingClock(), before);
      const now = '2026-01-01T00:00:00.000Z';
      db.prepare(`INSERT INTO inputs (id, source, input_key, origin, created_at) VALUES (1, 'mqtt', 'old', 'topic', ?)`).run(now);
      db.prepare(
        `INSERT INTO jobs (id, input_id, record_id, record_index, description, residues, sequence_hash, length, changes, status, created_at, finished_at)
         VALUES (1, 1, 'P0', 0, '', 'MAAAAAAAAAK', 'hash', 11, '[]', 'done', ?, ?)`,
      ).run(now, now);
      db.prepare(
        `INSERT INTO results (job_id, model_id, sequence_hash, prediction, cached, latency_ms, queue_wait_ms, created_at)
         VALUES (1, 'model-a', 'hash', ?, 0, 1, 1, ?)`,
      ).run(JSON.stringify(samplePrediction()), now);
      db.close();

      fixture.store.open();

      expect(fixture.store.inputOutcomes(1).map((outcome) => outcome.orf)).toEqual([null]);
      const view = new Database(fixture.file, { readonly: true });
      try {
        expect(view.prepare('SELECT record_id, orf_strand FROM predictions').all()).toEqual([{ record_id: 'P0', orf_strand: null }]);
      } finally {
        view.close();
      }
    } finally {
      fixture.cleanup();
    }
  });
});

describe('store with ORF jobs', () => {
  let fixture: StoreFixture;

  beforeEach(() => {
    fixture = createStoreFixture();
    fixture.store.open();
  });

  afterEach(() => fixture.cleanup());

  test('ORF survives enqueue, claim and outcome', () => {
    const { store } = fixture;
    const { inputId } = store.enqueueInput(mqttInput('k1'), [newJob(0, 'MAAAAAAAAAK'), orfJob()], [], []);

    const claimed = store.claimPendingJobs(10);
    expect(claimed.map((job) => job.orf ?? null)).toEqual([null, ORF]);

    for (const job of claimed) store.completeJob(job.id, jobResult(samplePrediction()), []);
    const outcomes = store.inputOutcomes(inputId);
    expect(outcomes.map((outcome) => outcome.orf ?? null)).toEqual([null, ORF]);
  });

  test('predictions view has ORF columns', () => {
    const { store } = fixture;
    store.enqueueInput(mqttInput('k2'), [newJob(0, 'MAAAAAAAAAK'), orfJob()], [], []);
    for (const job of store.claimPendingJobs(10)) store.completeJob(job.id, jobResult(samplePrediction()), []);

    const db = new Database(fixture.file, { readonly: true });
    try {
      const rows = db
        .prepare('SELECT record_id, parent_record_id, orf_strand, orf_frame, orf_start, orf_end, genetic_code FROM predictions ORDER BY result_id')
        .all();
      expect(rows).toEqual([
        { record_id: 'P0', parent_record_id: null, orf_strand: null, orf_frame: null, orf_start: null, orf_end: null, genetic_code: null },
        { record_id: 'contig7_orf3', parent_record_id: 'contig7', orf_strand: '-', orf_frame: 2, orf_start: 101, orf_end: 400, genetic_code: 11 },
      ]);
    } finally {
      db.close();
    }
  });

  test('strand outside + and - is rejected by the schema', () => {
    const { store } = fixture;
    const bad = { ...orfJob(), orf: { ...ORF, strand: 'x' as '+' } };

    expect(() => store.enqueueInput(mqttInput('k3'), [bad], [], [])).toThrow(/CHECK constraint failed/);
  });

  test('messages carry the ORF', () => {
    const { store } = fixture;
    const topics = buildTopics('bitnet-edge', 'pi');
    const { inputId } = store.enqueueInput(mqttInput('k4'), [orfJob()], [], []);
    const [job] = store.claimPendingJobs(1);
    const prediction = samplePrediction();
    store.completeJob(job.id, jobResult(prediction), []);

    const message = JSON.parse(predictionMessage(topics, job, prediction, { cached: false, latencyMs: 1, createdAt: new Date(0) }).payload) as PredictionMessage;
    expect(message.orf).toEqual(ORF);

    const input = store.getInput(inputId)!;
    const reply = JSON.parse(responseMessage(input, store.inputOutcomes(inputId), [], topics.response).payload) as ResponseMessage;
    expect(reply.results[0].orf).toEqual(ORF);
  });

  test('protein messages have no ORF field', () => {
    const { store } = fixture;
    const topics = buildTopics('bitnet-edge', 'pi');
    store.enqueueInput(mqttInput('k5'), [newJob(0, 'MAAAAAAAAAK')], [], []);
    const [job] = store.claimPendingJobs(1);

    const message = JSON.parse(predictionMessage(topics, job, samplePrediction(), { cached: false, latencyMs: 1, createdAt: new Date(0) }).payload) as Record<string, unknown>;
    expect('orf' in message).toBe(false);
  });
});
