import fc from 'fast-check';
import { FastaLineParser, parseFasta, type ParsedRecords } from '../../src/intake/fasta';
import { FastqLineParser, formatFastq, parseFastq } from '../../src/intake/fastq';
import { LineSplitter } from '../../src/intake/lines';

const recordId = fc.stringMatching(/^[A-Za-z0-9_|.:-]{1,20}$/);
const description = fc.oneof(fc.constant(''), fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9 =_.-]{0,30}[A-Za-z0-9]$/));
const residues = fc.stringMatching(/^[A-Za-z*]{0,120}$/);
const fastqRecord = residues.chain((rawSequence) =>
  fc.record({
    recordId,
    description,
    rawSequence: fc.constant(rawSequence),
    quality: fc.stringMatching(new RegExp(`^[!-~]{${rawSequence.length}}$`)),
  }),
);

/** Lines that FASTA and FASTQ parsers treat differently: headers, comments, blanks, separators. */
const line = fc.oneof(
  fc.stringMatching(/^>[A-Za-z0-9 ]{0,12}$/),
  fc.stringMatching(/^@[A-Za-z0-9 ]{0,12}$/),
  fc.stringMatching(/^\+[A-Za-z0-9]{0,4}$/),
  fc.stringMatching(/^;[ -~]{0,8}$/),
  fc.constantFrom('', ' ', '\t'),
  fc.stringMatching(/^[A-Za-z!-~*\u00e9\u4e2d]{1,30}$/),
);
const lineBreak = fc.constantFrom('\n', '\r\n', '\r');
const text = fc
  .tuple(fc.boolean(), fc.array(fc.tuple(line, lineBreak), { maxLength: 40 }), fc.boolean())
  .map(([bom, lines, finalBreak]) => {
    const body = lines.map(([content, separator]) => content + separator).join('');
    const trimmed = finalBreak ? body : body.replace(/(\r\n|\r|\n)$/, '');
    return (bom ? '\uFEFF' : '') + trimmed;
  });

/** Cuts `value` at the given positions, which may repeat or fall inside a CRLF. */
function cutAt(value: string, positions: number[]): string[] {
  const cuts = [...new Set(positions.map((position) => position % (value.length + 1)))].sort((a, b) => a - b);
  const chunks: string[] = [];
  let start = 0;
  for (const cut of cuts) {
    chunks.push(value.slice(start, cut));
    start = cut;
  }
  chunks.push(value.slice(start));
  return chunks;
}

/** Parses chunks the way the inbox reads a file, taking the output whenever `chunkRecords` entries wait. */
function parseInChunks(chunks: string[], parser: FastaLineParser | FastqLineParser, chunkRecords: number): ParsedRecords {
  const merged: ParsedRecords = { records: [], rejected: [] };
  const takeInto = (): void => {
    const parsed = parser.take();
    merged.records.push(...parsed.records);
    merged.rejected.push(...parsed.rejected);
  };

  const splitter = new LineSplitter();
  for (const chunk of chunks) {
    for (const entry of splitter.push(chunk)) {
      parser.push(entry);
      if (parser.pending >= chunkRecords) takeInto();
    }
  }
  for (const entry of splitter.end()) parser.push(entry);
  parser.end();
  takeInto();
  return merged;
}

describe('streaming parser properties', () => {
  test('FASTQ parse of format round-trips records', () => {
    fc.assert(
      fc.property(fc.array(fastqRecord, { minLength: 1, maxLength: 20 }), (records) => {
        const parsed = parseFastq(formatFastq(records));

        expect(parsed.rejected).toEqual([]);
        expect(parsed.records).toEqual(records.map((entry, index) => ({ ...entry, index })));
      }),
    );
  });

  test('FASTA stream matches whole-text parse', () => {
    fc.assert(
      fc.property(text, fc.array(fc.nat(), { maxLength: 12 }), fc.integer({ min: 1, max: 5 }), (value, positions, chunkRecords) => {
        const streamed = parseInChunks(cutAt(value, positions), new FastaLineParser(), chunkRecords);

        expect(streamed).toEqual(parseFasta(value));
      }),
      { numRuns: 300 },
    );
  });

  test('FASTQ stream matches whole-text parse', () => {
    const fastqText = fc.oneof(text, fc.array(fastqRecord, { maxLength: 8 }).map((records) => formatFastq(records)));
    fc.assert(
      fc.property(fastqText, fc.array(fc.nat(), { maxLength: 12 }), fc.integer({ min: 1, max: 5 }), (value, positions, chunkRecords) => {
        const streamed = parseInChunks(cutAt(value, positions), new FastqLineParser(), chunkRecords);

        expect(streamed).toEqual(parseFastq(value));
      }),
      { numRuns: 300 },
    );
  });

  test('UTF-8 bytes cut anywhere parse the same', () => {
    fc.assert(
      fc.property(text, fc.array(fc.nat(), { maxLength: 12 }), (value, positions) => {
        const bytes = Buffer.from(value, 'utf8');
        const cuts = [...new Set(positions.map((position) => position % (bytes.length + 1)))].sort((a, b) => a - b);
        const decoder = new TextDecoder('utf-8', { fatal: true });
        const chunks: string[] = [];
        let start = 0;
        for (const cut of [...cuts, bytes.length]) {
          chunks.push(decoder.decode(bytes.subarray(start, cut), { stream: true }));
          start = cut;
        }
        chunks.push(decoder.decode());

        expect(parseInChunks(chunks, new FastaLineParser(), 2)).toEqual(parseFasta(value));
      }),
      { numRuns: 200 },
    );
  });

  test('record indexes rise from chunk to chunk', () => {
    fc.assert(
      fc.property(text, fc.integer({ min: 1, max: 3 }), (value, chunkRecords) => {
        const parser = new FastaLineParser();
        const splitter = new LineSplitter();
        let previousMax = Number.NEGATIVE_INFINITY;
        const checkChunk = (): void => {
          const parsed = parser.take();
          const indexes = [...parsed.records.map((record) => record.index), ...parsed.rejected.map((entry) => entry.recordIndex)];
          if (indexes.length === 0) return;
          expect(Math.min(...indexes)).toBeGreaterThan(previousMax);
          previousMax = Math.max(...indexes);
        };

        for (const entry of [...splitter.push(value), ...splitter.end()]) {
          parser.push(entry);
          if (parser.pending >= chunkRecords) checkChunk();
        }
        parser.end();
        checkChunk();
      }),
      { numRuns: 200 },
    );
  });
});
