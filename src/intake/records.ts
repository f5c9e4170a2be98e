import type { NewJob, RejectedRecord, SequenceRecord } from '../contracts/jobs';
import { normalizeSequence } from './normalize';
import { defaultNucleotideOptions, prepareNucleotideRecord, type NucleotideOptions } from './orf-jobs';
import { detectSequenceKind, type SequenceKind } from './translate';

export interface PrepareOptions {
  /** Shortest accepted protein, in residues. */
  minLength: number;
  /** Kind of every record, as the sender stated it. When absent, each record's kind is detected by its alphabet. */
  kind?: SequenceKind;
  /** Genetic code and ORF settings for DNA and RNA records. The configuration defaults apply when absent. */
  nucleotide?: NucleotideOptions;
}

/**
 * Normalizes every parsed record into jobs: a protein record gives one job, and a DNA or RNA
 * record one job per ORF. Records that fail are added to the parser's rejections, and the
 * returned rejections are sorted by record index.
 */
export function prepareRecords(
  records: SequenceRecord[],
  rejected: RejectedRecord[],
  options: PrepareOptions,
): { jobs: NewJob[]; rejected: RejectedRecord[] } {
  const jobs: NewJob[] = [];
  const allRejected = [...rejected];

  for (const record of records) {
    const kind = options.kind ?? detectSequenceKind(record.rawSequence);
    if (kind !== 'protein') {
      const result = prepareNucleotideRecord(record, kind, options.nucleotide ?? defaultNucleotideOptions());
      if (result.ok) jobs.push(...result.jobs.map((job) => (record.options ? { ...job, options: record.options } : job)));
      else allRejected.push(result.rejection);
      continue;
    }

    const result = normalizeSequence(record.rawSequence, options);
    if (result.ok) {
      jobs.push({
        recordId: record.recordId,
        recordIndex: record.index,
        description: record.description,
        sequence: result.value,
        ...(record.options ? { options: record.options } : {}),
      });
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
