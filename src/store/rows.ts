import type { JobSource, NewJob, OrfOrigin, RejectedRecord } from '../contracts/jobs';
import type { Prediction, PredictOptions } from '../contracts/prediction';
import type { InputRow, JobOutcome, JobRow, OutboxRow } from '../contracts/store';
import type { InputRecord, JobRecord, OutboxRecord, RejectionRecord } from './migrations';

/** An `inputs` row with the counts of its jobs and rejections. */
export type InputWithCounts = InputRecord & { job_count: number; rejected_count: number };

/** A `jobs` row with the fields of its input that the processor needs. */
export type JobWithInput = JobRecord & { source: JobSource; request_id: string | null; origin: string };

/** A finished job joined with its result, which is null for a failed job. */
export type OutcomeRecord = Pick<
  JobRecord,
  'record_id' | 'record_index' | 'sequence_hash' | 'length' | 'changes' | 'error_code' | 'error_message' | OrfColumn
> & {
  job_id: number;
  status: 'done' | 'failed';
  finished_at: string;
  prediction: string | null;
  cached: 0 | 1 | null;
  latency_ms: number | null;
};

/** The ORF columns of `jobs`. */
type OrfColumn =
  | 'parent_record_id' | 'parent_record_index' | 'orf_number' | 'orf_strand' | 'orf_frame' | 'orf_start' | 'orf_end'
  | 'orf_has_stop' | 'nucleotide_length' | 'genetic_code';

/** Returns the ORF columns of a new job, all null for a protein record. */
export function orfColumns(job: NewJob): Pick<JobRecord, OrfColumn> {
  const orf = job.orf;
  let hasStop: 0 | 1 | null = null;
  if (orf !== undefined) hasStop = orf.hasStopCodon ? 1 : 0;
  return {
    parent_record_id: orf?.parentRecordId ?? null,
    parent_record_index: orf?.parentRecordIndex ?? null,
    orf_number: orf?.orfNumber ?? null,
    orf_strand: orf?.strand ?? null,
    orf_frame: orf?.frame ?? null,
    orf_start: orf?.start ?? null,
    orf_end: orf?.end ?? null,
    orf_has_stop: hasStop,
    nucleotide_length: orf?.nucleotideLength ?? null,
    genetic_code: orf?.geneticCode ?? null,
  };
}

/** Rebuilds the ORF of a stored job, or returns null for a protein record. */
export function toOrfOrigin(record: Pick<JobRecord, OrfColumn>): OrfOrigin | null {
  const { parent_record_id, parent_record_index, orf_number, orf_strand, orf_frame, orf_start, orf_end } = record;
  if (parent_record_id === null || parent_record_index === null || orf_number === null || orf_strand === null || orf_frame === null) return null;
  if (orf_start === null || orf_end === null || record.nucleotide_length === null || record.genetic_code === null) return null;
  return {
    parentRecordId: parent_record_id,
    parentRecordIndex: parent_record_index,
    orfNumber: orf_number,
    strand: orf_strand,
    frame: orf_frame,
    start: orf_start,
    end: orf_end,
    hasStopCodon: record.orf_has_stop === 1,
    nucleotideLength: record.nucleotide_length,
    geneticCode: record.genetic_code,
  };
}

export function toInputRow(record: InputWithCounts): InputRow {
  return {
    id: record.id,
    source: record.source,
    inputKey: record.input_key,
    requestId: record.request_id,
    origin: record.origin,
    replyTopic: record.reply_topic,
    correlationData: record.correlation_data,
    status: record.status,
    jobCount: record.job_count,
    rejectedCount: record.rejected_count,
    createdAt: record.created_at,
  };
}

export function toJobRow(record: JobWithInput): JobRow {
  return {
    id: record.id,
    inputId: record.input_id,
    source: record.source,
    requestId: record.request_id,
    origin: record.origin,
    recordId: record.record_id,
    recordIndex: record.record_index,
    description: record.description,
    residues: record.residues,
    sequenceHash: record.sequence_hash,
    changes: JSON.parse(record.changes) as string[],
    status: record.status,
    attempts: record.attempts,
    createdAt: record.created_at,
    orf: toOrfOrigin(record),
    ...(record.options === null ? {} : { options: JSON.parse(record.options) as PredictOptions }),
  };
}

export function toJobOutcome(record: OutcomeRecord): JobOutcome {
  return {
    jobId: record.job_id,
    recordId: record.record_id,
    recordIndex: record.record_index,
    sequenceHash: record.sequence_hash,
    length: record.length,
    changes: JSON.parse(record.changes) as string[],
    status: record.status,
    prediction: record.prediction === null ? null : (JSON.parse(record.prediction) as Prediction),
    cached: record.cached === 1,
    latencyMs: record.latency_ms,
    errorCode: record.error_code,
    errorMessage: record.error_message,
    finishedAt: record.finished_at,
    orf: toOrfOrigin(record),
  };
}

export function toRejectedRecord(record: RejectionRecord): RejectedRecord {
  return {
    recordId: record.record_id,
    recordIndex: record.record_index,
    code: record.code,
    message: record.message,
  };
}

export function toOutboxRow(record: OutboxRecord): OutboxRow {
  return {
    id: record.id,
    topic: record.topic,
    payload: record.payload,
    qos: record.qos,
    retain: record.retain === 1,
    correlationData: record.correlation_data,
    createdAt: record.created_at,
  };
}
