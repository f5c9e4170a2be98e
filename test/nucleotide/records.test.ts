import { parseRequest } from '../../src/mqtt/request';
import { MAX_ORFS_PER_RECORD, ORF_RECORD_INDEX_BASE, orfRecordIndex } from '../../src/intake/orf-jobs';
import { prepareRecords } from '../../src/intake/records';
import { hashResidues } from '../../src/intake/normalize';
import { reverseComplement } from '../../src/intake/translate';
import type { SequenceRecord } from '../../src/contracts/jobs';
import { GFP_AEQVI, UBIQUITIN_HUMAN } from '../support/proteins';
import { dnaFor } from './back-translate';

const GFP_GENE = `ATG${dnaFor(GFP_AEQVI.slice(1))}TAA`;
const UBIQUITIN_GENE = `ATG${dnaFor(UBIQUITIN_HUMAN.slice(1))}TGA`;
const NUCLEOTIDE = { geneticCode: 11, minOrfCodons: 70, orfOpenEnds: false };

function record(recordId: string, rawSequence: string, index: number): SequenceRecord {
  return { recordId, description: `${recordId} description`, rawSequence, index };
}

describe('prepareRecords with nucleotides', () => {
  test('DNA record gives one job per ORF', () => {
    const contig = `${GFP_GENE}CCCC${reverseComplement(UBIQUITIN_GENE)}`;
    const { jobs, rejected } = prepareRecords([record('contig1', contig, 0)], [], { minLength: 10, nucleotide: NUCLEOTIDE });

    expect(rejected).toEqual([]);
    const proteins = jobs.map((job) => job.sequence.residues);
    expect(proteins).toContain(GFP_AEQVI);
    expect(proteins).toContain(UBIQUITIN_HUMAN);

    const gfp = jobs.find((job) => job.sequence.residues === GFP_AEQVI)!;
    expect(gfp.sequence.sequenceHash).toBe(hashResidues(GFP_AEQVI));
    expect(gfp.orf).toMatchObject({ parentRecordId: 'contig1', parentRecordIndex: 0, strand: '+', frame: 1, start: 1, end: GFP_GENE.length, hasStopCodon: true, nucleotideLength: contig.length, geneticCode: 11 });
    expect(gfp.recordId).toBe(`contig1_orf${gfp.orf!.orfNumber}`);
    expect(gfp.description).toBe('contig1 description');

    const ubiquitin = jobs.find((job) => job.sequence.residues === UBIQUITIN_HUMAN)!;
    expect(ubiquitin.orf).toMatchObject({ strand: '-', start: GFP_GENE.length + 5, end: contig.length });
    expect(ubiquitin.sequence.changes).toContain(`translated ORF -1 ${GFP_GENE.length + 5}-${contig.length} of DNA with genetic code 11`);
  });

  test('ORF jobs have distinct record indexes', () => {
    const contig = `${GFP_GENE}CCCC${reverseComplement(UBIQUITIN_GENE)}`;
    const { jobs } = prepareRecords([record('p1', UBIQUITIN_HUMAN, 0), record('contig1', contig, 1)], [], { minLength: 10, nucleotide: NUCLEOTIDE });

    const indexes = jobs.map((job) => job.recordIndex);
    expect(new Set(indexes).size).toBe(indexes.length);
    expect(indexes[0]).toBe(0);
    for (const job of jobs.slice(1)) {
      expect(job.recordIndex).toBe(orfRecordIndex(1, job.orf!.orfNumber));
      expect(job.recordIndex).toBeGreaterThan(ORF_RECORD_INDEX_BASE + MAX_ORFS_PER_RECORD);
    }
  });

  test('record without ORF is NO_ORF_FOUND', () => {
    const { jobs, rejected } = prepareRecords([record('short', 'ATGAAACCCGGGTTTTAA', 3)], [], { minLength: 10, nucleotide: NUCLEOTIDE });

    expect(jobs).toEqual([]);
    expect(rejected).toHaveLength(1);
    expect(rejected[0].code).toBe('NO_ORF_FOUND');
    expect(rejected[0].recordIndex).toBe(3);
    expect(rejected[0].message).toContain('record "short"');
    expect(rejected[0].message).toContain('70 codons');
  });

  test('RNA record is translated', () => {
    const rna = GFP_GENE.replace(/T/g, 'U');
    const { jobs } = prepareRecords([record('mrna', rna, 0)], [], { minLength: 10, nucleotide: NUCLEOTIDE });

    expect(jobs.map((job) => job.sequence.residues)).toContain(GFP_AEQVI);
    expect(jobs[0].sequence.changes.some((change) => change.includes('of RNA'))).toBe(true);
  });

  test('explicit protein kind wins over detection', () => {
    const { jobs } = prepareRecords([record('peptide', 'GATTACAGATTACA', 0)], [], { minLength: 10, kind: 'protein', nucleotide: NUCLEOTIDE });

    expect(jobs).toHaveLength(1);
    expect(jobs[0].sequence.residues).toBe('GATTACAGATTACA');
    expect(jobs[0].orf).toBeUndefined();
  });

  test('explicit dna kind rejects amino-acid letters', () => {
    const { rejected } = prepareRecords([record('p', UBIQUITIN_HUMAN, 0)], [], { minLength: 10, kind: 'dna', nucleotide: NUCLEOTIDE });

    expect(rejected.map((entry) => entry.code)).toEqual(['INVALID_RESIDUE']);
    expect(rejected[0].message).toContain('IUPAC nucleotide');
  });

  test('protein records are unchanged', () => {
    const { jobs } = prepareRecords([record('ubq', UBIQUITIN_HUMAN, 0)], [], { minLength: 10 });

    expect(jobs).toEqual([{ recordId: 'ubq', recordIndex: 0, description: 'ubq description', sequence: { residues: UBIQUITIN_HUMAN, sequenceHash: hashResidues(UBIQUITIN_HUMAN), changes: [] } }]);
  });
});

describe('request kind', () => {
  const parse = (text: string): ReturnType<typeof parseRequest> => parseRequest(Buffer.from(text), { maxPayloadBytes: 1 << 20 });

  test.each(['dna', 'rna', 'protein'])('kind %s is accepted', (kind) => {
    const parsed = parse(JSON.stringify({ id: 'k', kind, sequence: 'ACGT' }));

    expect(parsed.ok).toBe(true);
    if (parsed.ok) expect(parsed.kind).toBe(kind);
  });

  test('missing kind is left to detection', () => {
    const parsed = parse(`>contig\n${GFP_GENE}\n`);

    expect(parsed.ok).toBe(true);
    if (parsed.ok) expect(parsed.kind).toBeNull();
  });
});
