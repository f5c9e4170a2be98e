import type { RejectedRecord, SequenceRecord } from '../contracts/jobs';
import { defaultRecordId, rejectInput, splitHeader, type ParsedRecords } from './fasta';
import { splitLines } from './lines';

/** A FASTQ record: a sequence record with one Phred quality character per residue. */
export interface FastqRecord extends SequenceRecord {
  quality: string;
}

/** Records and rejections parsed from FASTQ. */
export interface ParsedFastq extends ParsedRecords {
  records: FastqRecord[];
}

/** Lines of one FASTQ record: `@title`, sequence, `+[title]`, quality. */
const LINES_PER_RECORD = 4;

/** Maximum length of the excerpt of an invalid line quoted in an error message, in characters. */
const MAX_QUOTED_CHARACTERS = 40;

function quote(line: string): string {
  const excerpt = line.length > MAX_QUOTED_CHARACTERS ? `${line.slice(0, MAX_QUOTED_CHARACTERS)}…` : line;
  return JSON.stringify(excerpt);
}

/**
 * Parses FASTQ one line at a time, so a file is read as a stream. Each record is four lines:
 * `@id description`, the sequence, a `+` line that is empty or repeats the title, and a
 * quality line of the same length as the sequence in the characters `!` to `~` (Phred+33).
 * Blank lines between records are skipped. A record that breaks these rules is rejected as
 * INVALID_FASTQ, naming the record and its first line, and parsing goes on with the next four
 * lines. Multi-line (wrapped) FASTQ is not read: its records are rejected the same way.
 * Records and rejections collect in the parser until `take` removes them.
 */
export class FastqLineParser {
  private output: ParsedFastq = { records: [], rejected: [] };
  private readonly lines: string[] = [];
  private lineNumber = 0;
  private firstLineNumber = 0;
  private recordCount = 0;

  /** Number of parsed records and rejections that `take` has not returned yet. */
  get pending(): number {
    return this.output.records.length + this.output.rejected.length;
  }

  push(line: string): void {
    this.lineNumber += 1;
    if (this.lines.length === 0) {
      if (line.trim().length === 0) return;
      this.firstLineNumber = this.lineNumber;
    }
    this.lines.push(line);
    if (this.lines.length === LINES_PER_RECORD) this.closeRecord();
  }

  /** Rejects a last record that has fewer than four lines. Call once, after the last line. */
  end(): void {
    // The line break that ends the file gives one empty last line, which is not part of the record.
    while (this.lines.length > 0 && this.lines[this.lines.length - 1].trim().length === 0) this.lines.pop();
    if (this.lines.length > 0) {
      const index = this.recordCount;
      this.recordCount += 1;
      const { recordId } = this.lines[0].startsWith('@') ? splitHeader(this.lines[0].slice(1), index) : { recordId: defaultRecordId(index) };
      const message = `record "${recordId}" (line ${this.firstLineNumber}) ends after ${this.lines.length} line(s); a FASTQ record has 4 lines`;
      this.output.rejected.push({ recordId, recordIndex: index, code: 'INVALID_FASTQ', message });
      this.lines.length = 0;
    }
    if (this.recordCount === 0) this.output.rejected.push(rejectInput('EMPTY_INPUT', 'the input contains no sequence records'));
  }

  /** Removes and returns the records and rejections parsed so far. */
  take(): ParsedFastq {
    const parsed = this.output;
    this.output = { records: [], rejected: [] };
    return parsed;
  }

  private closeRecord(): void {
    const [title, sequenceLine, separator, qualityLine] = this.lines;
    const index = this.recordCount;
    this.recordCount += 1;
    this.lines.length = 0;

    const result = readRecord(title, sequenceLine, separator, qualityLine, index, this.firstLineNumber);
    if ('code' in result) this.output.rejected.push(result);
    else this.output.records.push(result);
  }
}

/** Checks the four lines of one record and returns the record or its rejection. */
function readRecord(
  title: string,
  sequenceLine: string,
  separator: string,
  qualityLine: string,
  index: number,
  firstLine: number,
): FastqRecord | RejectedRecord {
  const reject = (recordId: string, detail: string): RejectedRecord => ({
    recordId,
    recordIndex: index,
    code: 'INVALID_FASTQ',
    message: `record "${recordId}" (line ${firstLine}): ${detail}`,
  });

  if (!title.startsWith('@')) {
    return reject(defaultRecordId(index), `expected a title line starting with "@", got ${quote(title)}`);
  }
  const { recordId, description } = splitHeader(title.slice(1), index);

  if (!separator.startsWith('+')) {
    return reject(recordId, `expected a "+" line after the sequence, got ${quote(separator)}; wrapped (multi-line) FASTQ is not supported`);
  }
  const repeatedTitle = separator.slice(1).trim();
  if (repeatedTitle.length > 0 && repeatedTitle !== title.slice(1).trim() && repeatedTitle !== recordId) {
    return reject(recordId, `the "+" line repeats a different title ${quote(repeatedTitle)}`);
  }

  const rawSequence = sequenceLine.trimEnd();
  const quality = qualityLine.trimEnd();
  if (quality.length !== rawSequence.length) {
    return reject(recordId, `the quality line has ${quality.length} characters but the sequence has ${rawSequence.length}`);
  }
  const invalid = /[^!-~]/.exec(quality);
  if (invalid !== null) {
    return reject(recordId, `invalid quality character ${quote(invalid[0])} at position ${invalid.index + 1}; expected "!" to "~" (Phred+33)`);
  }
  return { recordId, description, rawSequence, quality, index };
}

/** Parses FASTQ text. See `FastqLineParser` for the rules. */
export function parseFastq(text: string): ParsedFastq {
  const parser = new FastqLineParser();
  for (const line of splitLines(text)) parser.push(line);
  parser.end();
  return parser.take();
}

/** Formats records as four-line FASTQ with an empty `+` line, so `parseFastq` returns the same records. */
export function formatFastq(records: Array<Pick<FastqRecord, 'recordId' | 'description' | 'rawSequence' | 'quality'>>): string {
  return records
    .map((record) => {
      const title = record.description.length > 0 ? `${record.recordId} ${record.description}` : record.recordId;
      return `@${title}\n${record.rawSequence}\n+\n${record.quality}\n`;
    })
    .join('');
}
