import type Database from 'better-sqlite3';
import type { JobSource, JobStatus } from '../contracts/jobs';
import type { InputRecord, JobRecord, MqttDeliveryRecord, OutboxRecord, RejectionRecord } from './migrations';
import type { InputWithCounts, JobWithInput, OutcomeRecord } from './rows';

/** Bound parameters of a job insert; the ORF columns are null for a protein record. */
export type JobInsertParams = Pick<
  JobRecord,
  | 'input_id' | 'record_id' | 'record_index' | 'description' | 'residues' | 'sequence_hash' | 'length' | 'changes' | 'created_at'
  | 'parent_record_id' | 'parent_record_index' | 'orf_number' | 'orf_strand' | 'orf_frame' | 'orf_start' | 'orf_end' | 'orf_has_stop'
  | 'nucleotide_length' | 'genetic_code' | 'options'
>;

const INPUT_WITH_COUNTS = `
  SELECT i.*,
    (SELECT count(*) FROM jobs j WHERE j.input_id = i.id) AS job_count,
    (SELECT count(*) FROM rejections x WHERE x.input_id = i.id) AS rejected_count
  FROM inputs i`;

const UNFINISHED_JOBS_OF_INPUT = `SELECT 1 FROM jobs j WHERE j.input_id = i.id AND j.status IN ('pending', 'running')`;

/** Prepares every statement of the store once; all values are bound parameters. */
export function prepareStatements(db: Database.Database) {
  return {
    // Inputs.
    insertInput: db.prepare<[Omit<InputRecord, 'id' | 'status' | 'finished_at' | 'complete'>]>(
      `INSERT INTO inputs (source, input_key, request_id, origin, reply_topic, correlation_data, status, created_at)
       VALUES (@source, @input_key, @request_id, @origin, @reply_topic, @correlation_data, 'open', @created_at)`,
    ),
    inputIdByKey: db.prepare<[string], number>('SELECT id FROM inputs WHERE input_key = ?').pluck(),
    inputById: db.prepare<[number], InputWithCounts>(`${INPUT_WITH_COUNTS} WHERE i.id = ?`),
    inputByKey: db.prepare<[string], InputWithCounts>(`${INPUT_WITH_COUNTS} WHERE i.input_key = ?`),
    inputHasUnfinishedJobs: db.prepare<[number], number>(
      `SELECT EXISTS (SELECT 1 FROM jobs WHERE input_id = ? AND status IN ('pending', 'running'))`,
    ).pluck(),
    completeOpenInputs: db.prepare<[{ source: JobSource | null }], InputWithCounts>(
      `${INPUT_WITH_COUNTS}
       WHERE i.status = 'open' AND i.complete = 1 AND (@source IS NULL OR i.source = @source)
         AND NOT EXISTS (${UNFINISHED_JOBS_OF_INPUT})
       ORDER BY i.id`,
    ),
    inputStatus: db.prepare<[number], InputRecord['status']>('SELECT status FROM inputs WHERE id = ?').pluck(),
    finishInput: db.prepare<[string, number]>(`UPDATE inputs SET status = 'finished', finished_at = ? WHERE id = ? AND status = 'open'`),
    insertIncompleteInput: db.prepare<[Omit<InputRecord, 'id' | 'status' | 'finished_at' | 'complete'>]>(
      `INSERT INTO inputs (source, input_key, request_id, origin, reply_topic, correlation_data, status, created_at, complete)
       VALUES (@source, @input_key, @request_id, @origin, @reply_topic, @correlation_data, 'open', @created_at, 0)`,
    ),
    inputComplete: db.prepare<[number], 0 | 1>('SELECT complete FROM inputs WHERE id = ?').pluck(),
    markInputComplete: db.prepare<[number]>('UPDATE inputs SET complete = 1 WHERE id = ? AND complete = 0'),
    // An ORF job has a record index of its own, so its parent's index is the parsed record's.
    lastStoredRecordIndex: db.prepare<[number, number], number | null>(
      `SELECT max(record_index) FROM (
         SELECT COALESCE(parent_record_index, record_index) AS record_index FROM jobs WHERE input_id = ?
         UNION ALL SELECT record_index FROM rejections WHERE input_id = ?)`,
    ).pluck(),

    // Jobs.
    insertJob: db.prepare<
      [JobInsertParams]
    >(
      `INSERT INTO jobs (input_id, record_id, record_index, description, residues, sequence_hash, length, changes, status, attempts, created_at,
         parent_record_id, parent_record_index, orf_number, orf_strand, orf_frame, orf_start, orf_end, orf_has_stop, nucleotide_length, genetic_code,
         options)
       VALUES (@input_id, @record_id, @record_index, @description, @residues, @sequence_hash, @length, @changes, 'pending', 0, @created_at,
         @parent_record_id, @parent_record_index, @orf_number, @orf_strand, @orf_frame, @orf_start, @orf_end, @orf_has_stop, @nucleotide_length, @genetic_code,
         @options)`,
    ),
    // A chunk stored again after a crash skips the record indexes that are already stored.
    insertJobIfNew: db.prepare<
      [JobInsertParams]
    >(
      `INSERT INTO jobs (input_id, record_id, record_index, description, residues, sequence_hash, length, changes, status, attempts, created_at,
         parent_record_id, parent_record_index, orf_number, orf_strand, orf_frame, orf_start, orf_end, orf_has_stop, nucleotide_length, genetic_code,
         options)
       VALUES (@input_id, @record_id, @record_index, @description, @residues, @sequence_hash, @length, @changes, 'pending', 0, @created_at,
         @parent_record_id, @parent_record_index, @orf_number, @orf_strand, @orf_frame, @orf_start, @orf_end, @orf_has_stop, @nucleotide_length, @genetic_code,
         @options)
       ON CONFLICT (input_id, record_index) DO NOTHING`,
    ),
    jobIdsOfInput: db.prepare<[number], number>('SELECT id FROM jobs WHERE input_id = ? ORDER BY record_index').pluck(),
    jobWithInput: db.prepare<[number], JobWithInput>(
      `SELECT j.*, i.source, i.request_id, i.origin FROM jobs j JOIN inputs i ON i.id = j.input_id WHERE j.id = ?`,
    ),
    jobStatus: db.prepare<[number], JobStatus>('SELECT status FROM jobs WHERE id = ?').pluck(),
    // A job sent back for a retry waits until its retry_after time; ISO-8601 UTC text sorts by time.
    pendingJobIds: db.prepare<[string, number], number>(
      `SELECT id FROM jobs WHERE status = 'pending' AND (retry_after IS NULL OR retry_after <= ?) ORDER BY id LIMIT ?`,
    ).pluck(),
    claimJob: db.prepare<[string, number]>(
      `UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ? WHERE id = ? AND status = 'pending'`,
    ),
    releaseJob: db.prepare<[number]>(`UPDATE jobs SET status = 'pending', started_at = NULL WHERE id = ? AND status = 'running'`),
    retryJob: db.prepare<[string, number]>(
      `UPDATE jobs SET status = 'pending', started_at = NULL, retry_after = ? WHERE id = ? AND status = 'running'`,
    ),
    requeueRunningJobs: db.prepare(`UPDATE jobs SET status = 'pending', started_at = NULL WHERE status = 'running'`),
    markJobDone: db.prepare<[string, number]>(
      `UPDATE jobs SET status = 'done', finished_at = ?, error_code = NULL, error_message = NULL
       WHERE id = ? AND status IN ('pending', 'running')`,
    ),
    markJobFailed: db.prepare<[{ id: number; code: string; message: string; finished_at: string }]>(
      `UPDATE jobs SET status = 'failed', finished_at = @finished_at, error_code = @code, error_message = @message
       WHERE id = @id AND status IN ('pending', 'running')`,
    ),
    countJobsByStatus: db.prepare<[], { status: JobStatus; count: number }>('SELECT status, count(*) AS count FROM jobs GROUP BY status'),
    // Finished jobs of an input in record order, after (record_index, id) of the previous page's
    // last row. A limit of -1 means no limit.
    outcomePageOfInput: db.prepare<[{ input_id: number; record_index: number; job_id: number; limit: number }], OutcomeRecord>(
      `SELECT j.id AS job_id, j.record_id, j.record_index, j.sequence_hash, j.length, j.changes, j.status,
              j.error_code, j.error_message, j.finished_at, r.prediction, r.cached, r.latency_ms,
              j.parent_record_id, j.parent_record_index, j.orf_number, j.orf_strand, j.orf_frame, j.orf_start, j.orf_end,
              j.orf_has_stop, j.nucleotide_length, j.genetic_code
       FROM jobs j LEFT JOIN results r ON r.job_id = j.id
       WHERE j.input_id = @input_id AND j.status IN ('done', 'failed') AND (j.record_index, j.id) > (@record_index, @job_id)
       ORDER BY j.record_index, j.id
       LIMIT @limit`,
    ),
    outcomeCountsOfInput: db.prepare<[number], { status: 'done' | 'failed'; n: number }>(
      `SELECT status, count(*) AS n FROM jobs WHERE input_id = ? AND status IN ('done', 'failed') GROUP BY status`,
    ),

    // Results. The sequence hash is copied from the job, so a result always matches its job.
    insertResult: db.prepare<
      [{ job_id: number; model_id: string; prediction: string; cached: 0 | 1; latency_ms: number; queue_wait_ms: number; created_at: string }]
    >(
      `INSERT INTO results (job_id, model_id, sequence_hash, prediction, cached, latency_ms, queue_wait_ms, created_at)
       SELECT @job_id, @model_id, sequence_hash, @prediction, @cached, @latency_ms, @queue_wait_ms, @created_at
       FROM jobs WHERE id = @job_id`,
    ),
    // A prediction with per-residue output matches only requests with options.residues, and one
    // without matches only requests without it, so results stay small unless residues were requested.
    latestPrediction: db.prepare<[string, string, 0 | 1], string>(
      `SELECT prediction FROM results
       WHERE sequence_hash = ? AND model_id = ? AND (json_type(prediction, '$.residues') IS NOT NULL) = ?
       ORDER BY id DESC LIMIT 1`,
    ).pluck(),

    // Rejections.
    insertRejection: db.prepare<[Omit<RejectionRecord, 'id'>]>(
      `INSERT INTO rejections (input_id, record_id, record_index, code, message, created_at)
       VALUES (@input_id, @record_id, @record_index, @code, @message, @created_at)`,
    ),
    insertRejectionIfNew: db.prepare<[Omit<RejectionRecord, 'id'>]>(
      `INSERT INTO rejections (input_id, record_id, record_index, code, message, created_at)
       SELECT @input_id, @record_id, @record_index, @code, @message, @created_at
       WHERE NOT EXISTS (SELECT 1 FROM rejections WHERE input_id = @input_id AND record_index = @record_index AND code = @code)`,
    ),
    rejectionsOfInput: db.prepare<[number], RejectionRecord>('SELECT * FROM rejections WHERE input_id = ? ORDER BY record_index, id'),

    // Outbox.
    insertOutbox: db.prepare<[Omit<OutboxRecord, 'id'>]>(
      `INSERT INTO outbox (topic, payload, qos, retain, correlation_data, created_at)
       VALUES (@topic, @payload, @qos, @retain, @correlation_data, @created_at)`,
    ),
    peekOutbox: db.prepare<[number], OutboxRecord>('SELECT * FROM outbox ORDER BY id LIMIT ?'),
    deleteOutbox: db.prepare<[number]>('DELETE FROM outbox WHERE id = ?'),
    replaceOutbox: db.prepare<[Pick<OutboxRecord, 'id' | 'topic' | 'payload' | 'qos' | 'retain' | 'correlation_data'>]>(
      `UPDATE outbox SET topic = @topic, payload = @payload, qos = @qos, retain = @retain, correlation_data = @correlation_data
       WHERE id = @id`,
    ),
    jobRecordIndex: db.prepare<[number], number>('SELECT record_index FROM jobs WHERE id = ?').pluck(),
    countOutbox: db.prepare<[], number>('SELECT count(*) FROM outbox').pluck(),
    trimOutbox: db.prepare<[number]>('DELETE FROM outbox WHERE id NOT IN (SELECT id FROM outbox ORDER BY id DESC LIMIT ?)'),
    // Ids are unique integers between min(id) and max(id), so the span bounds the row count and
    // reads only the two ends of the primary key index.
    outboxIdSpan: db.prepare<[], number>('SELECT COALESCE(max(id) - min(id) + 1, 0) FROM outbox').pluck(),

    // MQTT deliveries: the last request stored under each packet id.
    redeliveredInput: db.prepare<[number, string, string], number>(
      'SELECT input_id FROM mqtt_deliveries WHERE packet_id = ? AND payload_hash = ? AND created_at >= ?',
    ).pluck(),
    upsertDelivery: db.prepare<[MqttDeliveryRecord]>(
      `INSERT INTO mqtt_deliveries (packet_id, payload_hash, input_id, created_at)
       VALUES (@packet_id, @payload_hash, @input_id, @created_at)
       ON CONFLICT (packet_id) DO UPDATE SET payload_hash = excluded.payload_hash, input_id = excluded.input_id, created_at = excluded.created_at`,
    ),
    clearDeliveries: db.prepare('DELETE FROM mqtt_deliveries'),

    // Inbox ingest attempts.
    addIngestAttempt: db.prepare<[string, string, string], number>(
      `INSERT INTO inbox_attempts (file_key, attempts, last_error, updated_at) VALUES (?, 1, ?, ?)
       ON CONFLICT (file_key) DO UPDATE SET attempts = attempts + 1, last_error = excluded.last_error, updated_at = excluded.updated_at
       RETURNING attempts`,
    ).pluck(),
    deleteIngestAttempts: db.prepare<[string]>('DELETE FROM inbox_attempts WHERE file_key = ?'),

    // Counters.
    addToCounter: db.prepare<[string, number]>(
      'INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = value + excluded.value',
    ),
    counterValue: db.prepare<[string], number>('SELECT value FROM counters WHERE name = ?').pluck(),

    // Telemetry.
    insertTelemetry: db.prepare<[string, string]>('INSERT INTO telemetry (created_at, payload) VALUES (?, ?)'),
    pruneTelemetry: db.prepare<[string]>('DELETE FROM telemetry WHERE created_at < ?'),

    checkpointPassive: db.prepare<[], { busy: number; log: number; checkpointed: number }>('PRAGMA wal_checkpoint(PASSIVE)'),
    checkpointTruncate: db.prepare<[], { busy: number; log: number; checkpointed: number }>('PRAGMA wal_checkpoint(TRUNCATE)'),
  };
}

export type Statements = ReturnType<typeof prepareStatements>;
