import type { NewJob, RejectedRecord, SequenceRecord } from '../contracts/jobs';
import { normalizeSequence } from './normalize';

/**
 * Normalizes every parsed record into a job. Records that fail normalization are added to the
 * parser's rejections, and the returned rejections are sorted by record index.
 */
export function prepareRecords(
  records: SequenceRecord[],
  rejected: RejectedRecord[],
  options: { minLength: number },
): { jobs: NewJob[]; rejected: RejectedRecord[] } {
  const jobs: NewJob[] = [];
  const allRejected = [...rejected];

  for (const record of records) {
    const result = normalizeSequence(record.rawSequence, options);
    if (result.ok) {
      jobs.push({ recordId: record.recordId, recordIndex: record.index, description: record.description, sequence: result.value });
      continue;
    }
    allRejected.push({
      recordId: record.recordId,
      recordIndex: record.index,
      code: result.code,
      message: `record "${record.recordId}": ${result.message}`,
    });
  }

  allRejected.sort((a, b) => a.recordIndex - b.recordIndex);
  return { jobs, rejected: allRejected };
}
