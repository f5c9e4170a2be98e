import { detectTextFormat, detectUnsupportedFormat, INPUT_RECORD_ID, INPUT_RECORD_INDEX, parseFasta } from '../../src/intake/fasta';

describe('parseFasta', () => {
  test('multi-record file with wrapped lines', () => {
    const { records, rejected } = parseFasta('>sp|P1|A first protein\nMKV\nLLA\n>P2\nGGG\n');

    expect(rejected).toEqual([]);
    expect(records).toEqual([
      { recordId: 'sp|P1|A', description: 'first protein', rawSequence: 'MKVLLA', index: 0 },
      { recordId: 'P2', description: '', rawSequence: 'GGG', index: 1 },
    ]);
  });

  test('CRLF line endings', () => {
    const { records } = parseFasta('>a one\r\nMKV\r\nLLA\r\n>b\r\nGGG\r\n');

    expect(records.map((record) => record.rawSequence)).toEqual(['MKVLLA', 'GGG']);
    expect(records[0].description).toBe('one');
  });

  test('no trailing newline', () => {
    const { records } = parseFasta('>a\nMKV\n>b\nGGG');

    expect(records.map((record) => record.rawSequence)).toEqual(['MKV', 'GGG']);
  });

  test('one very long sequence line', () => {
    const residues = 'ACDEFGHIKLMNPQRSTVWY'.repeat(5000);
    const { records } = parseFasta(`>long\n${residues}\n`);

    expect(records[0].rawSequence).toHaveLength(100000);
  });

  test('empty header gets record-n id', () => {
    const { records } = parseFasta('>a\nMKV\n>\nGGG\n>   \nHHH\n');

    expect(records.map((record) => record.recordId)).toEqual(['a', 'record-2', 'record-3']);
    expect(records[1].description).toBe('');
  });

  test('duplicate ids stay separate records', () => {
    const { records } = parseFasta('>dup\nMKV\n>dup\nGGG\n');

    expect(records).toHaveLength(2);
    expect(records.map((record) => [record.recordId, record.index])).toEqual([
      ['dup', 0],
      ['dup', 1],
    ]);
  });

  test('semicolon comment lines ignored', () => {
    const { records, rejected } = parseFasta(';comment at start\n>a\nMKV\n;comment inside\nLLA\n');

    expect(rejected).toEqual([]);
    expect(records[0].rawSequence).toBe('MKVLLA');
  });

  test('leading blank lines', () => {
    const { records } = parseFasta('\n\n  \n>a\nMKV\n');

    expect(records).toHaveLength(1);
    expect(records[0].recordId).toBe('a');
  });

  test('blank lines inside a record', () => {
    const { records } = parseFasta('>a\nMKV\n\nLLA\n\n>b\nGGG\n');

    expect(records[0].rawSequence).toBe('MKVLLA');
  });

  test('header without sequence rejected', () => {
    const { records, rejected } = parseFasta('>a\nMKV\n>empty\n>c\nGGG\n');

    expect(records.map((record) => record.recordId)).toEqual(['a', 'c']);
    expect(records.map((record) => record.index)).toEqual([0, 2]);
    expect(rejected).toHaveLength(1);
    expect(rejected[0].code).toBe('EMPTY_SEQUENCE');
    expect(rejected[0].recordId).toBe('empty');
    expect(rejected[0].recordIndex).toBe(1);
    expect(rejected[0].message).toContain('"empty"');
  });

  test('last header without sequence rejected', () => {
    const { records, rejected } = parseFasta('>a\nMKV\n>last');

    expect(records).toHaveLength(1);
    expect(rejected.map((entry) => [entry.code, entry.recordId])).toEqual([['EMPTY_SEQUENCE', 'last']]);
  });

  test('bare sequence without header', () => {
    const { records, rejected } = parseFasta('MKVLLA\nGGGHHH\n');

    expect(rejected).toEqual([]);
    expect(records).toEqual([{ recordId: 'record-1', description: '', rawSequence: 'MKVLLAGGGHHH', index: 0 }]);
  });

  test('sequence lines before first header rejected', () => {
    const { records, rejected } = parseFasta('MKV\n>a\nGGG\n');

    expect(records.map((record) => record.recordId)).toEqual(['a']);
    expect(rejected).toHaveLength(1);
    expect(rejected[0].code).toBe('INVALID_FASTA');
    expect(rejected[0].recordId).toBe(INPUT_RECORD_ID);
    expect(rejected[0].recordIndex).toBe(INPUT_RECORD_INDEX);
  });

  test.each([[''], ['\n\n'], [';only a comment\n']])('empty input %j rejected', (text) => {
    const { records, rejected } = parseFasta(text);

    expect(records).toEqual([]);
    expect(rejected.map((entry) => entry.code)).toEqual(['EMPTY_INPUT']);
  });

  test('byte order mark before header', () => {
    const { records } = parseFasta('\uFEFF>a\nMKV\n');

    expect(records[0].recordId).toBe('a');
  });
});

describe('detectTextFormat', () => {
  test.each([
    ['>a\nMKV\n', 'fasta'],
    [';comment\n>a\nMKV\n', 'fasta'],
    ['\n\n>a\nMKV\n', 'fasta'],
    ['MKVLLA\n', 'bare'],
    ['{"sequence":"MKV"}', 'json'],
    ['  [{"sequence":"MKV"}]', 'json'],
    ['', 'unknown'],
    ['LOCUS       AB000263   368 bp    mRNA    linear   PRI 05-FEB-1999\n', 'unknown'],
    ['@read1\nACGT\n+\nIIII\n', 'fastq'],
    ['\r\n@read1 lane 2\r\nACGT\r\n+read1\r\nIIII\r\n', 'fastq'],
    ['@read1\nACGT\nIIII\n', 'fastq'],
  ])('%j is %s', (text, format) => {
    expect(detectTextFormat(text)).toBe(format);
  });
});

describe('detectUnsupportedFormat', () => {
  test.each([
    ['LOCUS       AB000263   368 bp    mRNA    linear   PRI 05-FEB-1999\nDEFINITION x\n', 'GenBank'],
    ['ID   INS_HUMAN               Reviewed;         110 AA.\nAC   P01308;\n', 'EMBL/Swiss-Prot'],
    ['# STOCKHOLM 1.0\nseq1 MKV\n//\n', 'Stockholm'],
    ['>a\nMK\u0000V\n', 'binary data'],
  ])('%j is %s', (text, name) => {
    expect(detectUnsupportedFormat(text)).toBe(name);
  });

  test.each([['>a\nMKV\n'], ['MKVLLA\n'], ['@notfastq\n'], ['@read1\nACGT\n+\nIIII\n']])('%j is not flagged', (text) => {
    expect(detectUnsupportedFormat(text)).toBeNull();
  });
});
