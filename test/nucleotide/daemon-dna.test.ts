import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { ErrorMessage, PredictionMessage, ResponseMessage } from '../../src/contracts/topics';
import type { ResultsFile } from '../../src/intake/results';
import { reverseComplement } from '../../src/intake/translate';
import { DaemonHarness } from '../support/daemon-harness';
import { waitUntil } from '../support/mqtt-probe';
import { GFP_AEQVI, INSULIN_HUMAN, LYSOZYME_CHICK } from '../support/proteins';
import { dnaFor } from './back-translate';

const GFP_GENE = `ATG${dnaFor(GFP_AEQVI.slice(1))}TAA`;
const LYSOZYME_GENE = `ATG${dnaFor(LYSOZYME_CHICK.slice(1))}TGA`;
const INSULIN_GENE = `ATG${dnaFor(INSULIN_HUMAN.slice(1))}TAG`;
/** GFP on the forward strand at 1..717, lysozyme on the reverse strand after a 4-base spacer. */
const CONTIG = `${GFP_GENE}CCCC${reverseComplement(LYSOZYME_GENE)}`;

function dropIntoInbox(harness: DaemonHarness, name: string, text: string): void {
  const staging = path.join(harness.dir, `.${name}.tmp`);
  writeFileSync(staging, text);
  renameSync(staging, path.join(harness.config.folders.inbox, name));
}

interface OrfRow {
  record_id: string;
  parent_record_id: string;
  orf_strand: string;
  orf_frame: number;
  orf_start: number;
  orf_end: number;
  genetic_code: number;
  nucleotide_length: number;
  residues: string;
}

function orfRows(harness: DaemonHarness, origin: string): OrfRow[] {
  const db = new Database(harness.endpoints.databaseFile, { readonly: true });
  try {
    return db
      .prepare(
        `SELECT j.record_id, j.parent_record_id, j.orf_strand, j.orf_frame, j.orf_start, j.orf_end, j.genetic_code, j.nucleotide_length, j.residues
         FROM jobs j JOIN inputs i ON i.id = j.input_id WHERE i.origin = ? AND j.status = 'done' ORDER BY j.record_index`,
      )
      .all(origin) as OrfRow[];
  } finally {
    db.close();
  }
}

describe('daemon with DNA input', () => {
  let harness: DaemonHarness;

  beforeAll(async () => {
    harness = await new DaemonHarness().start();
  });

  afterAll(async () => {
    await harness.stop();
    harness.remove();
  });

  test('DNA FASTA in the inbox gives ORF jobs', async () => {
    const { topics } = harness.endpoints;
    dropIntoInbox(harness, 'contigs.fna', `>contig1 two genes\n${CONTIG}\n>tiny\nATGAAACCCTAA\n`);

    await waitUntil(() => existsSync(path.join(harness.config.folders.done, 'contigs.fna')), 120_000, 'contigs.fna in done/');

    const rows = orfRows(harness, 'contigs.fna');
    const gfp = rows.find((row) => row.residues === GFP_AEQVI);
    const lysozyme = rows.find((row) => row.residues === LYSOZYME_CHICK);
    expect(gfp).toMatchObject({ parent_record_id: 'contig1', orf_strand: '+', orf_frame: 1, orf_start: 1, orf_end: GFP_GENE.length, genetic_code: 11, nucleotide_length: CONTIG.length });
    expect(lysozyme).toMatchObject({ parent_record_id: 'contig1', orf_strand: '-', orf_frame: 1, orf_start: GFP_GENE.length + 5, orf_end: CONTIG.length });
    expect(gfp!.record_id).toMatch(/^contig1_orf\d+$/);

    await harness.probe.waitFor(
      () => harness.probe.json<PredictionMessage>(topics.predictions).filter((m) => m.origin === 'contigs.fna').length === rows.length,
      20_000,
      'one prediction per ORF',
    );
    const message = harness.probe.json<PredictionMessage>(topics.predictions).find((m) => m.recordId === lysozyme!.record_id)!;
    expect(message.orf).toMatchObject({ parentRecordId: 'contig1', strand: '-', frame: 1, start: GFP_GENE.length + 5, end: CONTIG.length, geneticCode: 11 });
    expect(message.length).toBe(LYSOZYME_CHICK.length);

    const error = harness.probe.json<ErrorMessage>(topics.errors).find((m) => m.origin === 'contigs.fna')!;
    expect(error.errors.map((entry) => [entry.recordId, entry.code])).toEqual([['tiny', 'NO_ORF_FOUND']]);

    const results = JSON.parse(readFileSync(path.join(harness.config.folders.outbox, 'contigs.fna.json'), 'utf8')) as ResultsFile;
    const gfpRecord = results.records.find((record) => record.recordId === gfp!.record_id);
    expect(gfpRecord?.status).toBe('done');
    if (gfpRecord?.status === 'done') expect(gfpRecord.outcome.orf).toMatchObject({ strand: '+', start: 1, end: GFP_GENE.length });
    expect(results.records.find((record) => record.recordId === 'tiny')?.status).toBe('rejected');
  });

  test('kind dna request gets ORF results', async () => {
    const { topics } = harness.endpoints;
    const sequence = `GG${reverseComplement(INSULIN_GENE)}`;
    await harness.probe.publish(topics.request, JSON.stringify({ id: 'dna-1', kind: 'dna', sequence }));

    await harness.probe.waitFor(() => harness.probe.json<ResponseMessage>(topics.response).some((m) => m.id === 'dna-1'), 60_000, 'reply');
    const reply = harness.probe.json<ResponseMessage>(topics.response).find((m) => m.id === 'dna-1')!;

    const insulin = reply.results.find((result) => result.length === INSULIN_HUMAN.length && result.orf?.strand === '-');
    expect(insulin?.orf).toMatchObject({ parentRecordId: 'dna-1', strand: '-', frame: 1, start: 3, end: sequence.length, hasStopCodon: true });
    expect(insulin?.recordId).toMatch(/^dna-1_orf\d+$/);

    const rows = orfRows(harness, topics.request).filter((row) => row.parent_record_id === 'dna-1');
    expect(rows.some((row) => row.residues === INSULIN_HUMAN && row.orf_strand === '-' && row.orf_start === 3)).toBe(true);
  });

  test('kind dna request without ORF is NO_ORF_FOUND', async () => {
    const { topics } = harness.endpoints;
    await harness.probe.publish(topics.request, JSON.stringify({ id: 'dna-2', kind: 'dna', sequence: 'ATGAAATAA' }));

    await harness.probe.waitFor(() => harness.probe.json<ResponseMessage>(topics.response).some((m) => m.id === 'dna-2'), 30_000, 'reply');
    const reply = harness.probe.json<ResponseMessage>(topics.response).find((m) => m.id === 'dna-2')!;

    expect(reply.status).toBe('error');
    expect(reply.errors.map((entry) => entry.code)).toEqual(['NO_ORF_FOUND']);
    expect(reply.errors[0].message).toContain('record "dna-2"');
  });
});
