import { INPUT_RECORD_INDEX } from '../../src/intake/fasta';
import { formatFastq, parseFastq } from '../../src/intake/fastq';
import { LineSplitter, splitLines } from '../../src/intake/lines';

describe('parseFastq', () => {
  test.each([
    ['one record', '@r1\nMKVL\n+\nIIII\n', [{ recordId: 'r1', description: '', rawSequence: 'MKVL', quality: 'IIII', index: 0 }]],
    ['description kept', '@r1 lane=2 x\nMKVL\n+\nIIII\n', [{ recordId: 'r1', description: 'lane=2 x', rawSequence: 'MKVL', quality: 'IIII', index: 0 }]],
    ['repeated title', '@r1 a\nMK\n+r1 a\n!~\n', [{ recordId: 'r1', description: 'a', rawSequence: 'MK', quality: '!~', index: 0 }]],
    ['repeated id only', '@r1 a\nMK\n+r1\nII\n', [{ recordId: 'r1', description: 'a', rawSequence: 'MK', quality: 'II', index: 0 }]],
    ['CRLF and no final newline', '@r1\r\nMK\r\n+\r\nII', [{ recordId: 'r1', description: '', rawSequence: 'MK', quality: 'II', index: 0 }]],
    ['quality starting with @', '@r1\nMK\n+\n@@\n', [{ recordId: 'r1', description: '', rawSequence: 'MK', quality: '@@', index: 0 }]],
    [
      'blank lines between records',
      '\n@a\nMK\n+\nII\n\n\n@b\nVL\n+\nJJ\n\n',
      [
        { recordId: 'a', description: '', rawSequence: 'MK', quality: 'II', index: 0 },
        { recordId: 'b', description: '', rawSequence: 'VL', quality: 'JJ', index: 1 },
      ],
    ],
    ['empty sequence kept for normalization', '@e\n\n+\n\n', [{ recordId: 'e', description: '', rawSequence: '', quality: '', index: 0 }]],
  ])('%s', (_name, text, records) => {
    const parsed = parseFastq(text);

    expect(parsed.rejected).toEqual([]);
    expect(parsed.records).toEqual(records);
  });

  test.each([
    ['quality shorter', '@r1\nMKVL\n+\nIII\n', 'r1', 0, 'quality line has 3 characters but the sequence has 4'],
    ['quality longer', '@r1\nMK\n+\nIII\n', 'r1', 0, 'quality line has 3 characters but the sequence has 2'],
    ['missing plus line', '@r1\nMK\nII\n@r2\n', 'r1', 0, 'expected a "+" line'],
    ['wrapped sequence', '@r1\nMK\nVL\n+\nIIII\n', 'r1', 0, 'multi-line'],
    ['different title on plus line', '@r1\nMK\n+r2\nII\n', 'r1', 0, 'different title "r2"'],
    ['quality outside Phred+33', '@r1\nMK\n+\nI\u00e9\n', 'r1', 0, 'invalid quality character "\u00e9" at position 2'],
    ['space in quality', '@r1\nMKV\n+\nI I\n', 'r1', 0, 'invalid quality character " "'],
    ['header without @', '>r1\nMK\n+\nII\n', 'record-1', 0, 'expected a title line starting with "@"'],
    ['truncated record', '@r1\nMK\n', 'r1', 0, 'ends after 2 line(s)'],
    ['truncated second record', '@r0\nMK\n+\nII\n@r1\nMK\n+', 'r1', 1, 'ends after 3 line(s)'],
    ['empty quality line', '@r1\nMK\n+\n', 'r1', 0, 'quality line has 0 characters'],
  ])('%s rejected as INVALID_FASTQ', (_name, text, recordId, recordIndex, fragment) => {
    const parsed = parseFastq(text);
    const rejection = parsed.rejected.find((entry) => entry.code === 'INVALID_FASTQ');

    expect(parsed.records.filter((record) => record.recordId === recordId)).toEqual([]);
    expect(rejection?.recordId).toBe(recordId);
    expect(rejection?.recordIndex).toBe(recordIndex);
    expect(rejection?.message).toContain(fragment);
    expect(rejection?.message).toContain(`record "${recordId}" (line`);
  });

  test('bad record does not stop the next', () => {
    const parsed = parseFastq('@a\nMK\n+\nI\n@b\nVL\n+\nJJ\n');

    expect(parsed.records.map((record) => record.recordId)).toEqual(['b']);
    expect(parsed.records[0].index).toBe(1);
    expect(parsed.rejected.map((entry) => [entry.recordId, entry.recordIndex, entry.code])).toEqual([['a', 0, 'INVALID_FASTQ']]);
  });

  test('error names the first line of the record', () => {
    const parsed = parseFastq('@a\nMK\n+\nII\n\n@b\nVL\n+\nJ\n');

    expect(parsed.rejected[0].message).toContain('record "b" (line 6)');
  });

  test.each([[''], ['\n\n'], ['\r\n']])('%j is EMPTY_INPUT', (text) => {
    const parsed = parseFastq(text);

    expect(parsed.records).toEqual([]);
    expect(parsed.rejected).toHaveLength(1);
    expect(parsed.rejected[0].code).toBe('EMPTY_INPUT');
    expect(parsed.rejected[0].recordIndex).toBe(INPUT_RECORD_INDEX);
  });

  test('long offending line quoted shortened', () => {
    const parsed = parseFastq(`${'A'.repeat(500)}\nMK\n+\nII\n`);

    expect(parsed.rejected[0].message.length).toBeLessThan(200);
  });
});

describe('formatFastq', () => {
  test('writes four lines per record', () => {
    const text = formatFastq([{ recordId: 'r1', description: 'x y', rawSequence: 'MK', quality: 'II' }]);

    expect(text).toBe('@r1 x y\nMK\n+\nII\n');
  });
});

describe('LineSplitter', () => {
  test.each([
    ['CRLF split between chunks', ['a\r', '\nb'], ['a', 'b']],
    ['lone CR at the end', ['a\r'], ['a', '']],
    ['BOM at the start only', ['\uFEFFa\n\uFEFFb'], ['a', '\uFEFFb']],
    ['BOM after an empty chunk', ['', '\uFEFFa'], ['a']],
    ['no line break', ['ab', 'c'], ['abc']],
  ])('%s', (_name, chunks, lines) => {
    const splitter = new LineSplitter();
    const output = chunks.flatMap((chunk) => splitter.push(chunk));
    output.push(...splitter.end());

    expect(output).toEqual(lines);
    expect(output).toEqual(splitLines(chunks.join('')));
  });
});
