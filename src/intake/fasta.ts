import type { RejectedRecord, SequenceRecord } from '../contracts/jobs';

/** Records and rejections parsed from one input. */
export interface ParsedRecords {
  records: SequenceRecord[];
  rejected: RejectedRecord[];
}

/** Record id of a rejection that concerns the whole input rather than one record. */
export const INPUT_RECORD_ID = '(input)';
/** Record index of a rejection that concerns the whole input rather than one record. */
export const INPUT_RECORD_INDEX = -1;

export type TextFormat = 'fasta' | 'bare' | 'json' | 'unknown';

/** Builds a rejection that concerns the whole input. */
export function rejectInput(code: string, message: string): RejectedRecord {
  return { recordId: INPUT_RECORD_ID, recordIndex: INPUT_RECORD_INDEX, code, message };
}

/** Returns the record id used when a header or request gives none. */
export function defaultRecordId(index: number): string {
  return `record-${index + 1}`;
}

function splitLines(text: string): string[] {
  const withoutBom = text.startsWith('\uFEFF') ? text.slice(1) : text;
  return withoutBom.split(/\r\n|\r|\n/);
}

function firstLines(text: string, count: number): string[] {
  return splitLines(text.slice(0, 64 * 1024))
    .filter((line) => line.trim().length > 0)
    .slice(0, count);
}

/**
 * Names the format of `text` when this service recognizes it but does not read it: GenBank,
 * EMBL/Swiss-Prot, Stockholm, FASTQ or binary data. Returns null for any other text.
 */
export function detectUnsupportedFormat(text: string): string | null {
  if (text.includes('\u0000')) return 'binary data';

  const lines = firstLines(text, 4);
  if (lines.length === 0) return null;

  const first = lines[0];
  if (first.startsWith('LOCUS')) return 'GenBank';
  if (first.startsWith('ID   ')) return 'EMBL/Swiss-Prot';
  if (first.startsWith('# STOCKHOLM')) return 'Stockholm';
  // A FASTQ record is four lines: @id, sequence, +[id], qualities.
  if (first.startsWith('@') && lines.length >= 3 && lines[2].startsWith('+')) return 'FASTQ';
  return null;
}

/**
 * Classifies `text` by its first non-blank line: `json` for `{` or `[`, `fasta` for a `>`
 * header or `;` comment, `unknown` for empty text and formats that `detectUnsupportedFormat`
 * names, and `bare` for anything else (a sequence without a header).
 */
export function detectTextFormat(text: string): TextFormat {
  if (detectUnsupportedFormat(text) !== null) return 'unknown';

  const lines = firstLines(text, 1);
  if (lines.length === 0) return 'unknown';

  const first = lines[0].trimStart();
  if (first.startsWith('{') || first.startsWith('[')) return 'json';
  if (first.startsWith('>') || first.startsWith(';')) return 'fasta';
  return 'bare';
}

interface OpenRecord {
  recordId: string;
  description: string;
  lines: string[];
  index: number;
}

function openRecord(header: string, index: number): OpenRecord {
  const trimmed = header.trim();
  const match = /^(\S+)\s*(.*)$/.exec(trimmed);
  if (match === null) return { recordId: defaultRecordId(index), description: '', lines: [], index };
  return { recordId: match[1], description: match[2], lines: [], index };
}

/**
 * Parses multi-record FASTA. Accepts any line length, CRLF or LF, a missing final newline,
 * blank lines and `;` comment lines. Text with no `>` header at all is one bare sequence.
 * Sequence lines before the first header of a text that has headers are rejected as
 * INVALID_FASTA, and a header without sequence lines as EMPTY_SEQUENCE. Duplicate record
 * ids stay separate records. Residues are not checked here: see `normalizeSequence`.
 */
export function parseFasta(text: string): ParsedRecords {
  const records: SequenceRecord[] = [];
  const rejected: RejectedRecord[] = [];
  const leadingLines: string[] = [];
  let current: OpenRecord | null = null;
  let recordCount = 0;

  const closeRecord = (record: OpenRecord): void => {
    const rawSequence = record.lines.join('');
    if (rawSequence.trim().length === 0) {
      rejected.push({
        recordId: record.recordId,
        recordIndex: record.index,
        code: 'EMPTY_SEQUENCE',
        message: `record "${record.recordId}" has a header but no sequence lines`,
      });
      return;
    }
    records.push({ recordId: record.recordId, description: record.description, rawSequence, index: record.index });
  };

  for (const line of splitLines(text)) {
    if (line.startsWith(';')) continue;
    if (line.startsWith('>')) {
      if (current !== null) closeRecord(current);
      current = openRecord(line.slice(1), recordCount);
      recordCount += 1;
      continue;
    }
    if (line.trim().length === 0) continue;
    if (current === null) leadingLines.push(line);
    else current.lines.push(line);
  }
  if (current !== null) closeRecord(current);

  if (recordCount === 0) {
    if (leadingLines.length === 0) {
      return { records: [], rejected: [rejectInput('EMPTY_INPUT', 'the input contains no sequence records')] };
    }
    const bare: SequenceRecord = { recordId: defaultRecordId(0), description: '', rawSequence: leadingLines.join(''), index: 0 };
    return { records: [bare], rejected: [] };
  }

  if (leadingLines.length > 0) {
    rejected.unshift(
      rejectInput('INVALID_FASTA', `${leadingLines.length} sequence line(s) appear before the first ">" header and were ignored`),
    );
  }
  return { records, rejected };
}

/** Formats records as FASTA with each sequence on one line, so `parseFasta` returns the same records. */
export function formatFasta(records: Array<Pick<SequenceRecord, 'recordId' | 'description' | 'rawSequence'>>): string {
  return records
    .map((record) => {
      const header = record.description.length > 0 ? `${record.recordId} ${record.description}` : record.recordId;
      return `>${header}\n${record.rawSequence}\n`;
    })
    .join('');
}
