import type { ErrorCode } from '../../src/errors';
import { parseRequest } from '../../src/mqtt/request';

const options = { maxPayloadBytes: 256 };

function parse(text: string | Buffer): ReturnType<typeof parseRequest> {
  return parseRequest(typeof text === 'string' ? Buffer.from(text, 'utf8') : text, options);
}

describe('parseRequest', () => {
  test('JSON sequence with a string id', () => {
    const parsed = parse('{"id":"abc","sequence":"MKTAYIAKQR"}');
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.requestId).toBe('abc');
    expect(parsed.kind).toBeNull();
    expect(parsed.records).toEqual([{ recordId: 'abc', description: '', rawSequence: 'MKTAYIAKQR', index: 0 }]);
    expect(parsed.rejected).toEqual([]);
  });

  test('JSON sequence with a numeric id and kind', () => {
    const parsed = parse('{"id":42,"kind":"protein","sequence":"MKTAYIAKQR","options":{}}');
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.requestId).toBe('42');
    expect(parsed.records[0].recordId).toBe('42');
  });

  test('JSON sequence without an id', () => {
    const parsed = parse('{"sequence":"MKTAYIAKQR"}');
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.requestId).toBeNull();
    expect(parsed.records[0].recordId).toBe('record-1');
  });

  test('JSON fasta with two records', () => {
    const parsed = parse(JSON.stringify({ id: 'r1', fasta: '>p1 first\nMKTAYIAKQR\n>p2\nGAVLIPFMW\n' }));
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.requestId).toBe('r1');
    expect(parsed.records.map((record) => record.recordId)).toEqual(['p1', 'p2']);
    expect(parsed.records[0].description).toBe('first');
    expect(parsed.records[1].index).toBe(1);
  });

  test('raw FASTA keeps rejected records', () => {
    const parsed = parse('>empty\n>p2\nMKTAYIAKQR\n');
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.requestId).toBeNull();
    expect(parsed.records.map((record) => record.recordId)).toEqual(['p2']);
    expect(parsed.rejected).toHaveLength(1);
    expect(parsed.rejected[0].code).toBe('EMPTY_SEQUENCE');
  });

  test('bare sequence with a trailing newline', () => {
    const parsed = parse('MKTAYIAKQR\n');
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.records).toEqual([{ recordId: 'record-1', description: '', rawSequence: 'MKTAYIAKQR', index: 0 }]);
  });

  const rejections: Array<{ name: string; payload: string | Buffer; code: ErrorCode; mentions: string; requestId?: string }> = [
    { name: 'too large', payload: 'M'.repeat(257), code: 'PAYLOAD_TOO_LARGE', mentions: '257 bytes' },
    { name: 'invalid UTF-8', payload: Buffer.from([0x3e, 0x70, 0x0a, 0xc3, 0x28]), code: 'UNSUPPORTED_FORMAT', mentions: 'UTF-8' },
    { name: 'truncated gzip', payload: Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe]), code: 'CORRUPT_GZIP', mentions: 'gzip' },
    { name: 'empty payload', payload: '', code: 'EMPTY_INPUT', mentions: 'empty' },
    { name: 'blank payload', payload: ' \n\t', code: 'EMPTY_INPUT', mentions: 'empty' },
    { name: 'broken JSON', payload: '{"sequence": "MKT"', code: 'INVALID_JSON', mentions: 'not valid JSON' },
    { name: 'JSON array', payload: '["MKT"]', code: 'INVALID_REQUEST', mentions: 'JSON object' },
    { name: 'no sequence field', payload: '{"id":"x"}', code: 'INVALID_REQUEST', mentions: 'neither', requestId: 'x' },
    { name: 'both fields', payload: '{"sequence":"MKT","fasta":">a\\nMKT"}', code: 'INVALID_REQUEST', mentions: 'both' },
    { name: 'numeric sequence', payload: '{"id":"n","sequence":123}', code: 'INVALID_REQUEST', mentions: '"sequence" must be a string', requestId: 'n' },
    { name: 'object fasta', payload: '{"fasta":{}}', code: 'INVALID_REQUEST', mentions: '"fasta" must be a string' },
    { name: 'boolean id', payload: '{"id":true,"sequence":"MKT"}', code: 'INVALID_REQUEST', mentions: '"id"' },
    { name: 'unknown kind', payload: '{"kind":"rna2","sequence":"ACGU"}', code: 'UNSUPPORTED_FORMAT', mentions: 'kind "rna2" is not supported' },
    { name: 'numeric kind', payload: '{"kind":1,"sequence":"MKT"}', code: 'INVALID_REQUEST', mentions: '"kind"' },
    { name: 'array options', payload: '{"sequence":"MKT","options":[]}', code: 'INVALID_REQUEST', mentions: '"options"' },
    { name: 'empty fasta field', payload: '{"fasta":""}', code: 'EMPTY_INPUT', mentions: 'no sequence records' },
  ];

  test.each(rejections)('rejects $name', ({ payload, code, mentions, requestId }) => {
    const parsed = parse(payload);
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.code).toBe(code);
    expect(parsed.message).toContain(mentions);
    expect(parsed.requestId).toBe(requestId ?? null);
  });
});
