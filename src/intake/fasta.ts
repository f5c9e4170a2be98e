import type { RejectedRecord, SequenceRecord } from '../contracts/jobs';
import { splitLines } from './lines';

/** Records and rejections parsed from one input. */
export interface ParsedRecords {
  records: SequenceRecord[];
  rejected: RejectedRecord[];
}

/** Record id of a rejection that concerns the whole input rather than one record. */
export const INPUT_RECORD_ID = '(input)';
/** Record index of a rejection that concerns the whole input rather than one record. */
export const INPUT_RECORD_INDEX = -1;

export type TextFormat = 'fasta' | 'fastq' | 'bare' | 'json' | 'unknown';

/** Builds a rejection that concerns the whole input. */
export function rejectInput(code: string, message: string): RejectedRecord {
  return { recordId: INPUT_RECORD_ID, recordIndex: INPUT_RECORD_INDEX, code, message };
}

/** Returns the record id used when a header or request gives none. */
export function defaultRecordId(index: number): string {
  return `record-${index + 1}`;
}

function firstLines(text: string, count: number): string[] {
  return splitLines(text.slice(0, 64 * 1024))
    .filter((line) => line.trim().length > 0)
    .slice(0, count);
}

/**
 * Names the format of `text` when this service recognizes it but does not read it: GenBank,
 * EMBL/Swiss-Prot, Stockholm or binary data. Returns null for any other text.
 */
export function detectUnsupportedFormat(text: string): string | null {
  if (text.includes('\u0000')) return 'binary data';

  const lines = firstLines(text, 4);
  if (lines.length === 0) return null;

  const first = lines[0];
  if (first.startsWith('LOCUS')) return 'GenBank';
  if (first.startsWith('ID   ')) return 'EMBL/Swiss-Prot';
  if (first.startsWith('# STOCKHOLM')) return 'Stockholm';
  return null;
}

/**
 * Classifies `text` by its first non-blank line. `{` or `[` is `json`, a `>` header or `;`
 * comment is `fasta`, and an `@` title is `fastq`. Empty text and the formats that
 * `detectUnsupportedFormat` names are `unknown`, and anything else is `bare` (a sequence
 * without a header). Only the first 64 KiB are read, so a file's first chunk is enough.
 */
export function detectTextFormat(text: string): TextFormat {
  if (detectUnsupportedFormat(text) !== null) return 'unknown';

  const lines = firstLines(text, 1);
  if (lines.length === 0) return 'unknown';

  const first = lines[0].trimStart();
  if (first.startsWith('{') || first.startsWith('[')) return 'json';
  if (first.startsWith('>') || first.startsWith(';')) return 'fasta';
  // No amino-acid sequence starts with "@", so a malformed FASTQ record still reads as FASTQ.
  if (first.startsWith('@')) return 'fastq';
  return 'bare';
}

interface OpenRecord {
  recordId: string;
  description: string;
  lines: string[];
  index: number;
}

/** Splits a header line (without its marker) into the record id and the description. */
export function splitHeader(header: string, index: number): { recordId: string; description: string } {
  const match = /^(\S+)\s*(.*)$/.exec(header.trim());
  if (match === null) return { recordId: defaultRecordId(index), description: '' };
  return { recordId: match[1], description: match[2] };
}

/**
 * Parses FASTA one line at a time, so a file is read as a stream. Parsed records and
 * rejections collect in the parser until `take` removes them. Accepts any line length, blank
 * lines and `;` comment lines. Text with no `>` header at all is one bare sequence, so lines
 * before the first header are kept until a header appears. Sequence lines before the first
 * header of a text that has headers are rejected as INVALID_FASTA, and a header without
 * sequence lines as EMPTY_SEQUENCE. Duplicate record ids stay separate records. Residues are
 * not checked here: see `normalizeSequence`.
 */
export class FastaLineParser {
  private output: ParsedRecords = { records: [], rejected: [] };
  private readonly leadingLines: string[] = [];
  private current: OpenRecord | null = null;
  private recordCount = 0;

  /** Number of parsed records and rejections that `take` has not returned yet. */
  get pending(): number {
    return this.output.records.length + this.output.rejected.length;
  }

  push(line: string): void {
    if (line.startsWith(';')) return;
    if (line.startsWith('>')) {
      this.openRecord(line.slice(1));
      return;
    }
    if (line.trim().length === 0) return;
    if (this.current === null) this.leadingLines.push(line);
    else this.current.lines.push(line);
  }

  /** Closes the last record. Call once, after the last line. */
  end(): void {
    if (this.current !== null) this.closeRecord(this.current);
    this.current = null;
    if (this.recordCount > 0) return;

    if (this.leadingLines.length === 0) {
      this.output.rejected.push(rejectInput('EMPTY_INPUT', 'the input contains no sequence records'));
      return;
    }
    this.output.records.push({ recordId: defaultRecordId(0), description: '', rawSequence: this.leadingLines.join(''), index: 0 });
    this.leadingLines.length = 0;
  }

  /** Removes and returns the records and rejections parsed so far. */
  take(): ParsedRecords {
    const parsed = this.output;
    this.output = { records: [], rejected: [] };
    return parsed;
  }

  private openRecord(header: string): void {
    if (this.current !== null) this.closeRecord(this.current);
    if (this.recordCount === 0 && this.leadingLines.length > 0) {
      const message = `${this.leadingLines.length} sequence line(s) appear before the first ">" header and were ignored`;
      this.output.rejected.push(rejectInput('INVALID_FASTA', message));
      this.leadingLines.length = 0;
    }
    this.current = { ...splitHeader(header, this.recordCount), lines: [], index: this.recordCount };
    this.recordCount += 1;
  }

  private closeRecord(record: OpenRecord): void {
    const rawSequence = record.lines.join('');
    if (rawSequence.trim().length === 0) {
      this.output.rejected.push({
        recordId: record.recordId,
        recordIndex: record.index,
        code: 'EMPTY_SEQUENCE',
        message: `record "${record.recordId}" has a header but no sequence lines`,
      });
      return;
    }
    this.output.records.push({ recordId: record.recordId, description: record.description, rawSequence, index: record.index });
  }
}

/**
 * Parses multi-record FASTA text with CRLF, LF or CR line breaks and a missing final newline
 * accepted. See `FastaLineParser` for the rules.
 */
export function parseFasta(text: string): ParsedRecords {
  const parser = new FastaLineParser();
  for (const line of splitLines(text)) parser.push(line);
  parser.end();
  return parser.take();
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
