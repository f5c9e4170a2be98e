import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { RejectedRecord } from '../../src/contracts/jobs';
import type { JobOutcome } from '../../src/contracts/store';
import { writeFileAtomic } from '../../src/intake/files';
import { mergeResultsRecords, resultsFileText, type ResultsFileHeader, type ResultsFileRecord } from '../../src/intake/results';

function outcome(jobId: number, recordIndex: number, status: 'done' | 'failed' = 'done'): JobOutcome {
  return {
    jobId,
    recordId: `r${recordIndex}`,
    recordIndex,
    sequenceHash: `hash-${jobId}`,
    length: 100 + jobId,
    changes: recordIndex % 2 === 0 ? [] : ['lower-case residues upper-cased'],
    status,
    prediction: null,
    cached: false,
    latencyMs: status === 'done' ? 12.5 : null,
    errorCode: status === 'failed' ? 'MODEL_ERROR' : null,
    errorMessage: status === 'failed' ? 'model run failed: "quoted"\nsecond line' : null,
    finishedAt: '2026-12-05T00:00:00.000Z',
  };
}

function rejection(recordIndex: number): RejectedRecord {
  return { recordId: `bad${recordIndex}`, recordIndex, code: 'INVALID_SEQUENCE', message: `record ${recordIndex} has a digit` };
}

/** Hands out `outcomes` in pages of `size`, as the database does. */
function pager(outcomes: JobOutcome[], size: number): () => JobOutcome[] {
  let offset = 0;
  return () => {
    const page = outcomes.slice(offset, offset + size);
    offset += page.length;
    return page;
  };
}

/** Returns the results file as one JSON.stringify of the whole object, records sorted stably by index, jobs first. */
function expectedText(header: ResultsFileHeader, outcomes: JobOutcome[], rejections: RejectedRecord[]): string {
  const records: ResultsFileRecord[] = [
    ...outcomes.map((item): ResultsFileRecord => ({ recordIndex: item.recordIndex, recordId: item.recordId, status: item.status, outcome: item })),
    ...rejections.map((item): ResultsFileRecord => ({
      recordIndex: item.recordIndex,
      recordId: item.recordId,
      status: 'rejected',
      rejection: { code: item.code, message: item.message },
    })),
  ].sort((a, b) => a.recordIndex - b.recordIndex);
  return `${JSON.stringify({ ...header, records }, null, 2)}\n`;
}

const HEADER: ResultsFileHeader = {
  schemaVersion: 1,
  source: 'sample "one".fasta',
  inputId: 7,
  createdAt: '2026-12-05T00:00:00.000Z',
  counts: { records: 0, done: 0, failed: 0, rejected: 0 },
};

describe('results file written in pieces', () => {
  const cases: Array<[string, JobOutcome[], RejectedRecord[]]> = [
    ['no records', [], []],
    ['only rejections', [], [rejection(0), rejection(3)]],
    ['only jobs, several pages', Array.from({ length: 23 }, (_, index) => outcome(index + 1, index, index === 5 ? 'failed' : 'done')), []],
    [
      'jobs and rejections interleaved, two jobs of one record',
      [outcome(1, 1), outcome(2, 2), outcome(3, 2), outcome(4, 5, 'failed'), outcome(5, 9)],
      [rejection(0), rejection(2), rejection(3), rejection(12)],
    ],
  ];

  test.each(cases)('%s: the pieces join to the JSON of the whole file', (_name, outcomes, rejections) => {
    const pieces = [...resultsFileText(HEADER, mergeResultsRecords(pager(outcomes, 4), rejections))];

    expect(pieces.join('')).toBe(expectedText(HEADER, outcomes, rejections));
    const parsed = JSON.parse(pieces.join('')) as { records: unknown[] };
    expect(parsed.records).toHaveLength(outcomes.length + rejections.length);
  });

  test('records are read one page at a time, as they are written', () => {
    const outcomes = Array.from({ length: 10 }, (_, index) => outcome(index + 1, index));
    let pagesRead = 0;
    const nextPage = pager(outcomes, 3);
    const pieces = resultsFileText(HEADER, mergeResultsRecords(() => {
      pagesRead += 1;
      return nextPage();
    }, []));

    pieces.next();
    expect(pagesRead).toBe(1);
    expect([...pieces].length).toBe(10);
    // Four pages of up to 3 and the empty page that ends the input.
    expect(pagesRead).toBe(5);
  });

  test('writeFileAtomic writes a file given in pieces larger than one write', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bitnet-results-'));
    try {
      // 2,000 pieces of 300 characters: 600,000 characters, more than two writes of 256 KiB.
      const pieces = Array.from({ length: 2000 }, (_, index) => `${String(index).padStart(6, '0')}${'x'.repeat(293)}\n`);
      const written = await writeFileAtomic(dir, 'big.json', pieces);

      expect(readFileSync(written, 'utf8')).toBe(pieces.join(''));
      expect(readdirSync(dir)).toEqual(['big.json']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
