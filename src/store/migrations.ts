import type { JobSource, JobStatus, InputStatus } from '../contracts/jobs';

/** One numbered schema change, applied once in its own transaction. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

// Times are ISO-8601 UTC strings from Date.toISOString(), so they sort as text.
// The view uses only SQL that the sqlite3 CLI of Debian 12 (SQLite 3.40) parses, because a CLI
// that cannot parse a view reports the whole schema as malformed. So it avoids aggregate
// ORDER BY (3.44) and the ->> operator (3.38), and feeds group_concat from ordered subqueries.
// NOTE: SQLite documents the group_concat order as arbitrary without aggregate ORDER BY. The
// tests check that 3.40 and the bundled SQLite keep the array order of the prediction JSON.
const INITIAL_SCHEMA = `
CREATE TABLE inputs (
  id INTEGER PRIMARY KEY,
  source TEXT NOT NULL CHECK (source IN ('mqtt', 'inbox', 'cli')),
  input_key TEXT NOT NULL UNIQUE,
  request_id TEXT,
  origin TEXT NOT NULL,
  reply_topic TEXT,
  correlation_data TEXT,
  status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'finished')),
  created_at TEXT NOT NULL,
  finished_at TEXT
);
CREATE INDEX inputs_open ON inputs (id) WHERE status = 'open';

CREATE TABLE jobs (
  id INTEGER PRIMARY KEY,
  input_id INTEGER NOT NULL REFERENCES inputs (id) ON DELETE CASCADE,
  record_id TEXT NOT NULL,
  record_index INTEGER NOT NULL,
  description TEXT NOT NULL,
  residues TEXT NOT NULL,
  sequence_hash TEXT NOT NULL,
  length INTEGER NOT NULL,
  changes TEXT NOT NULL CHECK (json_valid(changes)),
  status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  error_code TEXT,
  error_message TEXT,
  created_at TEXT NOT NULL,
  started_at TEXT,
  finished_at TEXT,
  UNIQUE (input_id, record_index)
);
CREATE INDEX jobs_status ON jobs (status, id);

CREATE TABLE results (
  id INTEGER PRIMARY KEY,
  job_id INTEGER NOT NULL UNIQUE REFERENCES jobs (id) ON DELETE CASCADE,
  model_id TEXT NOT NULL,
  sequence_hash TEXT NOT NULL,
  prediction TEXT NOT NULL CHECK (json_valid(prediction)),
  cached INTEGER NOT NULL CHECK (cached IN (0, 1)),
  latency_ms REAL NOT NULL,
  queue_wait_ms REAL NOT NULL,
  created_at TEXT NOT NULL
);
CREATE INDEX results_sequence_model ON results (sequence_hash, model_id);

CREATE TABLE rejections (
  id INTEGER PRIMARY KEY,
  input_id INTEGER NOT NULL REFERENCES inputs (id) ON DELETE CASCADE,
  record_id TEXT NOT NULL,
  record_index INTEGER NOT NULL,
  code TEXT NOT NULL,
  message TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE INDEX rejections_input ON rejections (input_id);

CREATE TABLE outbox (
  id INTEGER PRIMARY KEY,
  topic TEXT NOT NULL,
  payload TEXT NOT NULL,
  qos INTEGER NOT NULL CHECK (qos IN (0, 1)),
  retain INTEGER NOT NULL CHECK (retain IN (0, 1)),
  correlation_data TEXT,
  created_at TEXT NOT NULL
);

CREATE TABLE telemetry (
  id INTEGER PRIMARY KEY,
  created_at TEXT NOT NULL,
  payload TEXT NOT NULL CHECK (json_valid(payload))
);
CREATE INDEX telemetry_created_at ON telemetry (created_at);

CREATE VIEW predictions AS
SELECT
  r.id AS result_id,
  r.created_at AS created_at,
  i.source AS source,
  i.request_id AS request_id,
  j.record_id AS record_id,
  i.origin AS origin,
  r.sequence_hash AS sequence_hash,
  j.length AS length,
  COALESCE(
    (SELECT group_concat(label, ', ') FROM (
      SELECT json_extract(value, '$.label') AS label
      FROM json_each(r.prediction, '$.localization.predicted') ORDER BY key)),
    json_extract(r.prediction, '$.localization.top[0].label')
  ) AS localization,
  (SELECT group_concat(label, ', ') FROM (
    SELECT json_extract(value, '$.label') AS label
    FROM json_each(r.prediction, '$.go.top') ORDER BY key)) AS top_go_terms,
  COALESCE(
    (SELECT group_concat(label, ', ') FROM (
      SELECT json_extract(value, '$.label') AS label
      FROM json_each(r.prediction, '$.function.predicted') ORDER BY key)),
    json_extract(r.prediction, '$.function.top[0].label')
  ) AS function,
  json_extract(r.prediction, '$.lm.logLikelihood') AS log_likelihood,
  r.cached AS cached,
  r.latency_ms AS latency_ms,
  r.model_id AS model_id
FROM results r
JOIN jobs j ON j.id = r.job_id
JOIN inputs i ON i.id = j.input_id;
`;

// An inbox file is stored in chunks of jobs, so its input row exists before its last record
// does. `complete` is 0 until the last chunk commits, and an input is finished only when it is 1.
// Rows written before this migration were stored in one transaction and are complete.
const INPUT_COMPLETE_FLAG = `
ALTER TABLE inputs ADD COLUMN complete INTEGER NOT NULL DEFAULT 1 CHECK (complete IN (0, 1));
`;

// A protein translated from an ORF of a DNA or RNA record keeps where it came from. The columns
// are NULL for protein records. Coordinates are 1-based and inclusive on the forward strand.
// The predictions view is re-created with the ORF columns appended, so its other columns keep
// their names and order.
const ORF_COLUMNS = `
ALTER TABLE jobs ADD COLUMN parent_record_id TEXT;
ALTER TABLE jobs ADD COLUMN parent_record_index INTEGER;
ALTER TABLE jobs ADD COLUMN orf_number INTEGER;
ALTER TABLE jobs ADD COLUMN orf_strand TEXT CHECK (orf_strand IN ('+', '-'));
ALTER TABLE jobs ADD COLUMN orf_frame INTEGER CHECK (orf_frame IN (1, 2, 3));
ALTER TABLE jobs ADD COLUMN orf_start INTEGER;
ALTER TABLE jobs ADD COLUMN orf_end INTEGER;
ALTER TABLE jobs ADD COLUMN orf_has_stop INTEGER CHECK (orf_has_stop IN (0, 1));
ALTER TABLE jobs ADD COLUMN nucleotide_length INTEGER;
ALTER TABLE jobs ADD COLUMN genetic_code INTEGER;

DROP VIEW predictions;
CREATE VIEW predictions AS
SELECT
  r.id AS result_id,
  r.created_at AS created_at,
  i.source AS source,
  i.request_id AS request_id,
  j.record_id AS record_id,
  i.origin AS origin,
  r.sequence_hash AS sequence_hash,
  j.length AS length,
  COALESCE(
    (SELECT group_concat(label, ', ') FROM (
      SELECT json_extract(value, '$.label') AS label
      FROM json_each(r.prediction, '$.localization.predicted') ORDER BY key)),
    json_extract(r.prediction, '$.localization.top[0].label')
  ) AS localization,
  (SELECT group_concat(label, ', ') FROM (
    SELECT json_extract(value, '$.label') AS label
    FROM json_each(r.prediction, '$.go.top') ORDER BY key)) AS top_go_terms,
  COALESCE(
    (SELECT group_concat(label, ', ') FROM (
      SELECT json_extract(value, '$.label') AS label
      FROM json_each(r.prediction, '$.function.predicted') ORDER BY key)),
    json_extract(r.prediction, '$.function.top[0].label')
  ) AS function,
  json_extract(r.prediction, '$.lm.logLikelihood') AS log_likelihood,
  r.cached AS cached,
  r.latency_ms AS latency_ms,
  r.model_id AS model_id,
  j.parent_record_id AS parent_record_id,
  j.orf_strand AS orf_strand,
  j.orf_frame AS orf_frame,
  j.orf_start AS orf_start,
  j.orf_end AS orf_end,
  j.genetic_code AS genetic_code
FROM results r
JOIN jobs j ON j.id = r.job_id
JOIN inputs i ON i.id = j.input_id;
`;

// Totals that must survive restarts, one row per name. `outbox_dropped` counts the outbox
// messages deleted unsent because the outbox reached its bound (mqtt.outboxMaxMessages).
const COUNTERS = `
CREATE TABLE counters (
  name TEXT PRIMARY KEY,
  value INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO counters (name, value) VALUES ('outbox_dropped', 0);
`;

// Durable retry state. `jobs.retry_after` is the earliest time a job sent back after a failed
// inference may be claimed again (NULL: at once). `mqtt_deliveries` keeps, per MQTT packet id,
// the payload hash and input of the last request stored under it, so a broker's redelivery of a
// request without an id is recognized after a crash. `inbox_attempts` counts the failed ingest
// attempts of a claimed inbox file, keyed by its name, size and mtime, across restarts.
const RETRY_STATE = `
ALTER TABLE jobs ADD COLUMN retry_after TEXT;

CREATE TABLE mqtt_deliveries (
  packet_id INTEGER PRIMARY KEY CHECK (packet_id BETWEEN 1 AND 65535),
  payload_hash TEXT NOT NULL,
  input_id INTEGER NOT NULL REFERENCES inputs (id) ON DELETE CASCADE,
  created_at TEXT NOT NULL
);

CREATE TABLE inbox_attempts (
  file_key TEXT PRIMARY KEY,
  attempts INTEGER NOT NULL CHECK (attempts > 0),
  last_error TEXT NOT NULL,
  updated_at TEXT NOT NULL
) WITHOUT ROWID;
`;

// Request options of a job (such as `{"residues": true}`) as JSON, NULL for none, so a job that
// waits in the queue across a restart still runs with them.
const JOB_OPTIONS = `
ALTER TABLE jobs ADD COLUMN options TEXT CHECK (options IS NULL OR json_valid(options));
`;

// MQTT variant-scoring requests, stored before the message is acknowledged so that a request
// being scored when the daemon stops or crashes is scored again at the next start.
// `request_key` is `variants:id:<id>:<payload hash>` for a request with an id and a random key
// for one without. `payload` is the message body as received (possibly gzip), which a restart
// parses again. A request rejected at intake is stored already answered and without it.
// `packet_id` is the MQTT packet id it was last delivered under, NULL for QoS 0 or once a new
// MQTT session or a later message under the same packet id made it meaningless. `attempts`
// counts the scoring runs started, and `reply` is the JSON reply once answered. The reply of a
// full scan with predictions can be tens of MB, so answered rows are deleted once they are older
// than `variants.retentionHours`.
const VARIANT_REQUESTS = `
CREATE TABLE variant_requests (
  id INTEGER PRIMARY KEY,
  request_key TEXT NOT NULL UNIQUE,
  request_id TEXT,
  origin TEXT NOT NULL,
  payload BLOB,
  payload_hash TEXT NOT NULL,
  packet_id INTEGER CHECK (packet_id BETWEEN 1 AND 65535),
  reply_topic TEXT NOT NULL,
  correlation_data TEXT,
  status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'answered')),
  attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  reply TEXT CHECK (reply IS NULL OR json_valid(reply)),
  created_at TEXT NOT NULL,
  finished_at TEXT,
  CHECK (status = 'answered' OR payload IS NOT NULL),
  CHECK ((status = 'answered') = (reply IS NOT NULL))
);
CREATE INDEX variant_requests_pending ON variant_requests (id) WHERE status = 'pending';
CREATE INDEX variant_requests_packet ON variant_requests (packet_id) WHERE packet_id IS NOT NULL;
CREATE INDEX variant_requests_answered ON variant_requests (finished_at) WHERE status = 'answered';
`;

/** Migrations of this build, in version order. A migration that has shipped must never change. */
export const MIGRATIONS: readonly Migration[] = [
  { version: 1, name: 'initial schema', sql: INITIAL_SCHEMA },
  { version: 2, name: 'input complete flag', sql: INPUT_COMPLETE_FLAG },
  { version: 3, name: 'ORF columns of jobs', sql: ORF_COLUMNS },
  { version: 4, name: 'persistent counters', sql: COUNTERS },
  { version: 5, name: 'retry and redelivery state', sql: RETRY_STATE },
  { version: 6, name: 'job request options', sql: JOB_OPTIONS },
  { version: 7, name: 'variant requests', sql: VARIANT_REQUESTS },
];

/** A row of `schema_migrations`. */
export interface SchemaMigrationRecord {
  version: number;
  name: string;
  applied_at: string;
}

/** A row of `inputs`, as SQLite returns it. */
export interface InputRecord {
  id: number;
  source: JobSource;
  input_key: string;
  request_id: string | null;
  origin: string;
  reply_topic: string | null;
  correlation_data: string | null;
  status: InputStatus;
  created_at: string;
  finished_at: string | null;
  /** 0 while an inbox file is being stored in chunks, 1 once its last chunk is committed. */
  complete: 0 | 1;
}

/** A row of `jobs`. `changes` is a JSON array of strings. */
export interface JobRecord {
  id: number;
  input_id: number;
  record_id: string;
  record_index: number;
  description: string;
  residues: string;
  sequence_hash: string;
  length: number;
  changes: string;
  status: JobStatus;
  attempts: number;
  error_code: string | null;
  error_message: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  /** ORF columns (migration 3), all NULL for a protein record. */
  parent_record_id: string | null;
  parent_record_index: number | null;
  orf_number: number | null;
  orf_strand: '+' | '-' | null;
  orf_frame: 1 | 2 | 3 | null;
  orf_start: number | null;
  orf_end: number | null;
  orf_has_stop: 0 | 1 | null;
  nucleotide_length: number | null;
  genetic_code: number | null;
  /** Earliest time a retried job may be claimed again (migration 5), or NULL for at once. */
  retry_after: string | null;
  /** Request options as a JSON object (migration 6), or NULL for none. */
  options: string | null;
}

/** A row of `results`. `prediction` is a `Prediction` as JSON and `cached` is 0 or 1. */
export interface ResultRecord {
  id: number;
  job_id: number;
  model_id: string;
  sequence_hash: string;
  prediction: string;
  cached: 0 | 1;
  latency_ms: number;
  queue_wait_ms: number;
  created_at: string;
}

/** A row of `rejections`: a record rejected at intake, which never became a job. */
export interface RejectionRecord {
  id: number;
  input_id: number;
  record_id: string;
  record_index: number;
  code: string;
  message: string;
  created_at: string;
}

/** A row of `outbox`. `qos` and `retain` are stored as integers. */
export interface OutboxRecord {
  id: number;
  topic: string;
  payload: string;
  qos: 0 | 1;
  retain: 0 | 1;
  correlation_data: string | null;
  created_at: string;
}

/** A row of `counters` (migration 4): a named total that survives restarts. */
export interface CounterRecord {
  name: string;
  value: number;
}

/** A row of `mqtt_deliveries` (migration 5): the last request stored under an MQTT packet id. */
export interface MqttDeliveryRecord {
  packet_id: number;
  /** SHA-256 of the payload, hex. */
  payload_hash: string;
  input_id: number;
  created_at: string;
}

/** A row of `inbox_attempts` (migration 5): failed ingest attempts of one claimed inbox file. */
export interface InboxAttemptRecord {
  /** `<name>:<size>:<mtimeMs>` of the claimed file. */
  file_key: string;
  attempts: number;
  last_error: string;
  updated_at: string;
}

/** A row of `variant_requests` (migration 7): one MQTT variant-scoring request. */
export interface VariantRequestRecord {
  id: number;
  request_key: string;
  request_id: string | null;
  origin: string;
  /** Message body as received, possibly gzip; NULL for a request rejected at intake. */
  payload: Buffer | null;
  /** SHA-256 of the payload, hex. */
  payload_hash: string;
  packet_id: number | null;
  reply_topic: string;
  /** MQTT 5 correlation data of the request, base64, or NULL. */
  correlation_data: string | null;
  status: 'pending' | 'answered';
  attempts: number;
  /** The reply as JSON once answered, else NULL. */
  reply: string | null;
  created_at: string;
  finished_at: string | null;
}

/** A row of `telemetry`. `payload` is the telemetry record as JSON. */
export interface TelemetryRecord {
  id: number;
  created_at: string;
  payload: string;
}

/** A row of the `predictions` view. */
export interface PredictionViewRecord {
  result_id: number;
  created_at: string;
  source: JobSource;
  request_id: string | null;
  record_id: string;
  origin: string;
  sequence_hash: string;
  length: number;
  localization: string | null;
  top_go_terms: string | null;
  function: string | null;
  log_likelihood: number | null;
  cached: 0 | 1;
  latency_ms: number;
  model_id: string;
  parent_record_id: string | null;
  orf_strand: '+' | '-' | null;
  orf_frame: 1 | 2 | 3 | null;
  orf_start: number | null;
  orf_end: number | null;
  genetic_code: number | null;
}
