import type { RejectedRecord } from '../contracts/jobs';
import type { JobOutcome } from '../contracts/store';
import { PAYLOAD_SCHEMA_VERSION } from '../contracts/topics';

/** One record of a results file: its job outcome, or why it was rejected before inference. */
export type ResultsFileRecord =
  | { recordIndex: number; recordId: string; status: 'done' | 'failed'; outcome: JobOutcome }
  | { recordIndex: number; recordId: string; status: 'rejected'; rejection: { code: string; message: string } };

/** Content of `outbox/<name>.json`. */
export interface ResultsFile {
  schemaVersion: number;
  source: string;
  inputId: number;
  createdAt: string;
  counts: { records: number; done: number; failed: number; rejected: number };
  records: ResultsFileRecord[];
}

/** One entry of `failed/<name>.errors.json`. */
export interface RecordError {
  recordId: string;
  recordIndex: number;
  code: string;
  message: string;
}

/** Content of `failed/<name>.errors.json`. */
export interface ErrorsFile {
  schemaVersion: number;
  source: string;
  inputId: number;
  createdAt: string;
  errors: RecordError[];
}

/** Builds the results file of one inbox input, records ordered by their index in the file. */
export function buildResultsFile(
  source: string,
  inputId: number,
  outcomes: JobOutcome[],
  rejections: RejectedRecord[],
  createdAt: string,
): ResultsFile {
  const records: ResultsFileRecord[] = [
    ...outcomes.map((outcome): ResultsFileRecord => ({ recordIndex: outcome.recordIndex, recordId: outcome.recordId, status: outcome.status, outcome })),
    ...rejections.map((rejection): ResultsFileRecord => ({
      recordIndex: rejection.recordIndex,
      recordId: rejection.recordId,
      status: 'rejected',
      rejection: { code: rejection.code, message: rejection.message },
    })),
  ];
  records.sort((a, b) => a.recordIndex - b.recordIndex);

  const done = outcomes.filter((outcome) => outcome.status === 'done').length;
  return {
    schemaVersion: PAYLOAD_SCHEMA_VERSION,
    source,
    inputId,
    createdAt,
    counts: { records: records.length, done, failed: outcomes.length - done, rejected: rejections.length },
    records,
  };
}

/** Lists the rejected records and failed jobs of one input, ordered by record index. */
export function collectRecordErrors(outcomes: JobOutcome[], rejections: RejectedRecord[]): RecordError[] {
  const errors: RecordError[] = rejections.map(({ recordId, recordIndex, code, message }) => ({ recordId, recordIndex, code, message }));
  for (const outcome of outcomes) {
    if (outcome.status !== 'failed') continue;
    errors.push({
      recordId: outcome.recordId,
      recordIndex: outcome.recordIndex,
      code: outcome.errorCode ?? 'INTERNAL',
      message: outcome.errorMessage ?? 'the job failed without an error message',
    });
  }
  return errors.sort((a, b) => a.recordIndex - b.recordIndex);
}
