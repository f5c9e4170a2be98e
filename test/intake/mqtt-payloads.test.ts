import { gzipSync } from 'node:zlib';
import { parseRequest } from '../../src/mqtt/request';

const LIMIT = 4096;

function parse(payload: Buffer | string) {
  return parseRequest(Buffer.isBuffer(payload) ? payload : Buffer.from(payload), { maxPayloadBytes: LIMIT });
}

describe('MQTT payload formats', () => {
  test.each([
    ['gzip FASTA', gzipSync('>a\nMKVLAAGIVG\n>b\nACDEFGHIKL\n'), ['a', 'b']],
    ['gzip JSON', gzipSync('{"id":"q1","sequence":"MKVLAAGIVG"}'), ['q1']],
    ['gzip bare sequence', gzipSync('MKVLAAGIVG\n'), ['record-1']],
    ['FASTQ text', Buffer.from('@r1 x\nMKVLAAGIVG\n+\nIIIIIIIIII\n@r2\nACDE\n+\n!!!!\n'), ['r1', 'r2']],
    ['gzip FASTQ', gzipSync('@r1\nMKVLAAGIVG\n+\nIIIIIIIIII\n'), ['r1']],
  ])('%s accepted', (_name, payload, recordIds) => {
    const parsed = parse(payload);

    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.records.map((record) => record.recordId)).toEqual(recordIds);
    expect(parsed.rejected).toEqual([]);
  });

  test('FASTQ record error kept per record', () => {
    const parsed = parse('@r1\nMKVLAAGIVG\n+\nIII\n@r2\nACDE\n+\n!!!!\n');

    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.records.map((record) => record.recordId)).toEqual(['r2']);
    expect(parsed.rejected.map((entry) => [entry.recordId, entry.code])).toEqual([['r1', 'INVALID_FASTQ']]);
  });

  test('zip bomb rejected at the payload limit', () => {
    const payload = gzipSync(`>a\n${'M'.repeat(3_000_000)}\n`);
    expect(payload.length).toBeLessThan(LIMIT);

    const parsed = parse(payload);

    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.code).toBe('PAYLOAD_TOO_LARGE');
    expect(parsed.message).toContain(`${LIMIT} bytes`);
  });

  test('decompressed size at the limit accepted', () => {
    const text = `>a\n${'M'.repeat(LIMIT - 4)}\n`;
    expect(Buffer.byteLength(text)).toBe(LIMIT);

    const parsed = parse(gzipSync(text));

    expect(parsed.ok).toBe(true);
  });

  test.each([
    ['truncated', gzipSync('>a\nMKVLAAGIVG\n'.repeat(20)).subarray(0, 20)],
    ['corrupt', Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]), Buffer.from('garbage')])],
  ])('%s gzip rejected as CORRUPT_GZIP', (_name, payload) => {
    const parsed = parse(payload);

    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.code).toBe('CORRUPT_GZIP');
    expect(parsed.message).toContain('gzip');
  });

  test('compressed size over the limit rejected unread', () => {
    const parsed = parse(Buffer.concat([Buffer.from([0x1f, 0x8b]), Buffer.alloc(LIMIT)]));

    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.code).toBe('PAYLOAD_TOO_LARGE');
  });
});
