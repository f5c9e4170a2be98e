import type { RejectedRecord } from '../contracts/jobs';
import type { JobOutcome } from '../contracts/store';

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

/** The fields of a results file before its records. */
export type ResultsFileHeader = Omit<ResultsFile, 'records'>;

/**
 * Merges the finished jobs of an input, read page by page in record order, with its rejected
 * records into results-file records ordered by record index. At an equal index the job comes
 * first. `nextPage` returns the next page, and an empty page at the end.
 */
export function* mergeResultsRecords(nextPage: () => JobOutcome[], rejections: RejectedRecord[]): Generator<ResultsFileRecord> {
  const rejected = [...rejections].sort((a, b) => a.recordIndex - b.recordIndex);
  let next = 0;
  const rejectionRecord = (rejection: RejectedRecord): ResultsFileRecord => ({
    recordIndex: rejection.recordIndex,
    recordId: rejection.recordId,
    status: 'rejected',
    rejection: { code: rejection.code, message: rejection.message },
  });

  for (let page = nextPage(); page.length > 0; page = nextPage()) {
    for (const outcome of page) {
      while (next < rejected.length && rejected[next].recordIndex < outcome.recordIndex) yield rejectionRecord(rejected[next++]);
      yield { recordIndex: outcome.recordIndex, recordId: outcome.recordId, status: outcome.status, outcome };
    }
  }
  while (next < rejected.length) yield rejectionRecord(rejected[next++]);
}

/**
 * Yields the text of a results file in pieces, one per record after the header. Joined, the
 * pieces equal `JSON.stringify({ ...header, records }, null, 2)` followed by a newline, so a
 * file of any size is written without holding all its records in memory.
 */
export function* resultsFileText(header: ResultsFileHeader, records: Iterable<ResultsFileRecord>): Generator<string> {
  const head = JSON.stringify({ ...header, records: [] }, null, 2);
  // The header ends with `"records": []\n}`; the records go between the brackets.
  const opening = head.slice(0, head.length - '[]\n}'.length);
  let count = 0;
  for (const record of records) {
    const text = JSON.stringify(record, null, 2).replace(/\n/g, '\n    ');
    yield `${count === 0 ? `${opening}[\n` : ',\n'}    ${text}`;
    count += 1;
  }
  yield count === 0 ? `${opening}[]\n}\n` : '\n  ]\n}\n';
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
