import { INPUT_RECORD_INDEX } from '../../src/intake/fasta';
import { prepareRecords } from '../../src/intake/records';
import { parseJsonRecords, parseSequenceText } from '../../src/intake/text';

describe('parseSequenceText', () => {
  test.each([
    ['LOCUS       AB000263   368 bp    mRNA\n', 'GenBank'],
    ['ID   INS_HUMAN   Reviewed;   110 AA.\n', 'EMBL/Swiss-Prot'],
    ['# STOCKHOLM 1.0\n', 'Stockholm'],
  ])('%j rejected by name', (text, name) => {
    const { records, rejected } = parseSequenceText(text);

    expect(records).toEqual([]);
    expect(rejected).toHaveLength(1);
    expect(rejected[0].code).toBe('UNSUPPORTED_FORMAT');
    expect(rejected[0].recordIndex).toBe(INPUT_RECORD_INDEX);
    expect(rejected[0].message).toContain(name);
  });

  test('FASTA text parsed', () => {
    expect(parseSequenceText('>a\nMKV\n').records.map((record) => record.recordId)).toEqual(['a']);
  });

  test('FASTQ text parsed', () => {
    const { records, rejected } = parseSequenceText('@r1 lane 1\nMKVL\n+\nIIII\n');

    expect(rejected).toEqual([]);
    expect(records).toEqual([{ recordId: 'r1', description: 'lane 1', rawSequence: 'MKVL', quality: 'IIII', index: 0 }]);
  });

  test('JSON text parsed', () => {
    expect(parseSequenceText('{"id":"q1","sequence":"MKV"}').records.map((record) => record.recordId)).toEqual(['q1']);
  });
});

describe('parseJsonRecords', () => {
  test('single object with id', () => {
    const { records, rejected } = parseJsonRecords('{"id":"q1","sequence":"MKVLLA"}');

    expect(rejected).toEqual([]);
    expect(records).toEqual([{ recordId: 'q1', description: '', rawSequence: 'MKVLLA', index: 0 }]);
  });

  test('numeric id and missing id', () => {
    const { records } = parseJsonRecords('[{"id":7,"sequence":"MKV"},{"sequence":"GGG"}]');

    expect(records.map((record) => record.recordId)).toEqual(['7', 'record-2']);
    expect(records.map((record) => record.index)).toEqual([0, 1]);
  });

  test('fasta field parsed as FASTA', () => {
    const { records } = parseJsonRecords('{"fasta":">a\\nMKV\\n>b\\nGGG\\n"}');

    expect(records.map((record) => record.recordId)).toEqual(['a', 'b']);
  });

  test('bad array item rejected alone', () => {
    const { records, rejected } = parseJsonRecords('[{"sequence":"MKV"},{"seq":"GGG"},{"id":true,"sequence":"HHH"}]');

    expect(records).toHaveLength(1);
    expect(rejected.map((entry) => [entry.code, entry.recordIndex])).toEqual([
      ['INVALID_REQUEST', 1],
      ['INVALID_REQUEST', 2],
    ]);
    expect(rejected[0].message).toContain('"sequence"');
    expect(rejected[1].message).toContain('"id"');
  });

  test('invalid JSON rejected', () => {
    const { rejected } = parseJsonRecords('{"sequence": ');

    expect(rejected.map((entry) => entry.code)).toEqual(['INVALID_JSON']);
  });

  test('empty array rejected', () => {
    expect(parseJsonRecords('[]').rejected.map((entry) => entry.code)).toEqual(['EMPTY_INPUT']);
  });
});

describe('prepareRecords', () => {
  test('mixed records split into jobs and rejections', () => {
    const parsed = parseSequenceText('>ok1\nMKVLLAGGG\n>bad\nMKV#LLA\n>empty\n>short\nMK\n>ok2\nmkvllaggg*\n');
    const { jobs, rejected } = prepareRecords(parsed.records, parsed.rejected, { minLength: 5 });

    expect(jobs.map((job) => [job.recordId, job.recordIndex])).toEqual([
      ['ok1', 0],
      ['ok2', 4],
    ]);
    expect(jobs[1].sequence.residues).toBe('MKVLLAGGG');
    expect(jobs[1].sequence.changes).toEqual(['converted to upper case', 'removed trailing *']);
    expect(rejected.map((entry) => [entry.recordId, entry.recordIndex, entry.code])).toEqual([
      ['bad', 1, 'INVALID_RESIDUE'],
      ['empty', 2, 'EMPTY_SEQUENCE'],
      ['short', 3, 'SEQUENCE_TOO_SHORT'],
    ]);
    expect(rejected[0].message).toContain('"bad"');
  });

  test('description kept on the job', () => {
    const parsed = parseSequenceText('>P1 some protein OS=Homo sapiens\nMKVLLAGGG\n');
    const { jobs } = prepareRecords(parsed.records, parsed.rejected, { minLength: 5 });

    expect(jobs[0].description).toBe('some protein OS=Homo sapiens');
  });
});
