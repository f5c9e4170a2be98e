import type { NewJob, OrfOrigin, RejectedRecord, SequenceRecord } from '../contracts/jobs';
import { configSchema } from '../config/schema';
import { geneticCode } from './genetic-codes';
import { hashResidues } from './normalize';
import { findOrfs } from './orfs';
import { normalizeNucleotides } from './translate';

/** Settings that turn DNA and RNA records into protein jobs, from the `sequence` section of the configuration. */
export interface NucleotideOptions {
  /** NCBI genetic code (translation table) id. */
  geneticCode: number;
  /** Minimum ORF length in codons, stop codon excluded. */
  minOrfCodons: number;
  /** Also translate an ORF that reaches the sequence end without a stop codon. */
  orfOpenEnds: boolean;
}

/** Returns the nucleotide settings of the default configuration. */
export function defaultNucleotideOptions(): NucleotideOptions {
  const { geneticCode: code, minOrfCodons, orfOpenEnds } = configSchema.shape.sequence.parse(undefined);
  return { geneticCode: code, minOrfCodons, orfOpenEnds };
}

/**
 * Lowest record index of an ORF job. Every job of an input needs its own record index, so the
 * n-th ORF of the record at index i gets ORF_RECORD_INDEX_BASE + i × MAX_ORFS_PER_RECORD + n.
 * That value depends on no other record, so inputs stored in several transactions stay
 * consistent, and it sorts ORF jobs after the protein records of the same input.
 */
export const ORF_RECORD_INDEX_BASE = 1_000_000_000_000;

/**
 * Largest number of ORFs one record may give, which keeps ORF record indexes of different
 * records apart. ORFs of one frame do not overlap, so a record of 50 MB (the default
 * inbox.maxFileBytes) contains at most 6 × 50e6 / (3 × 101) ≈ 990,000 ORFs of 100 codons or more.
 */
export const MAX_ORFS_PER_RECORD = 1_000_000;

/** Returns the record index of the `orfNumber`-th (1-based) ORF of the record at `parentIndex`. */
export function orfRecordIndex(parentIndex: number, orfNumber: number): number {
  return ORF_RECORD_INDEX_BASE + parentIndex * MAX_ORFS_PER_RECORD + orfNumber;
}

/** Jobs made from one DNA or RNA record, or the reason the record is rejected. */
export type NucleotideRecordResult = { ok: true; jobs: NewJob[] } | { ok: false; rejection: RejectedRecord };

function rejectRecord(record: SequenceRecord, code: string, message: string): NucleotideRecordResult {
  return { ok: false, rejection: { recordId: record.recordId, recordIndex: record.index, code, message: `record "${record.recordId}": ${message}` } };
}

/**
 * Turns one DNA or RNA record into one protein job per ORF on its six frames. The job's record
 * id is `<record id>_orf<n>`, numbered by start coordinate. A record with no ORF of the minimum
 * length is rejected with NO_ORF_FOUND.
 */
export function prepareNucleotideRecord(record: SequenceRecord, kind: 'dna' | 'rna', options: NucleotideOptions): NucleotideRecordResult {
  const normalized = normalizeNucleotides(record.rawSequence);
  if (!normalized.ok) return rejectRecord(record, 'INVALID_RESIDUE', normalized.message);
  if (normalized.bases.length === 0) return rejectRecord(record, 'EMPTY_SEQUENCE', `the ${kind.toUpperCase()} sequence has no nucleotides`);

  const code = geneticCode(options.geneticCode);
  const orfs = findOrfs(normalized.bases, { code, minCodons: options.minOrfCodons, allowOpenEnd: options.orfOpenEnds });
  if (orfs.length === 0) {
    const message =
      `no open reading frame of at least ${options.minOrfCodons} codons on either strand of the ${normalized.bases.length} nucleotides ` +
      `(genetic code ${code.id}). Lower sequence.minOrfCodons, or send the protein with "kind": "protein"`;
    return rejectRecord(record, 'NO_ORF_FOUND', message);
  }
  if (orfs.length > MAX_ORFS_PER_RECORD) {
    return rejectRecord(record, 'PAYLOAD_TOO_LARGE', `${orfs.length} ORFs found, more than the maximum of ${MAX_ORFS_PER_RECORD} per record. Split the record`);
  }

  const jobs = orfs.map((orf, position): NewJob => {
    const orfNumber = position + 1;
    const origin: OrfOrigin = {
      parentRecordId: record.recordId,
      parentRecordIndex: record.index,
      orfNumber,
      strand: orf.strand,
      frame: orf.frame,
      start: orf.start,
      end: orf.end,
      hasStopCodon: orf.hasStopCodon,
      nucleotideLength: normalized.bases.length,
      geneticCode: code.id,
    };
    const changes = [
      ...normalized.changes,
      `translated ORF ${orf.strand}${orf.frame} ${orf.start}-${orf.end} of ${kind.toUpperCase()} with genetic code ${code.id}`,
    ];
    return {
      recordId: `${record.recordId}_orf${orfNumber}`,
      recordIndex: orfRecordIndex(record.index, orfNumber),
      description: record.description,
      sequence: { residues: orf.protein, sequenceHash: hashResidues(orf.protein), changes },
      orf: origin,
    };
  });
  return { ok: true, jobs };
}
