import { readPredictOptions } from '../../src/intake/options';
import { prepareRecords } from '../../src/intake/records';
import { parseJsonRecords } from '../../src/intake/text';
import { parseRequest } from '../../src/mqtt/request';
import { UBIQUITIN_HUMAN } from '../support/proteins';

describe('request options', () => {
  test.each([
    { value: undefined, options: undefined },
    { value: null, options: undefined },
    { value: {}, options: undefined },
    { value: { residues: false }, options: undefined },
    { value: { residues: true }, options: { residues: true } },
    { value: { residues: true, future: 1 }, options: { residues: true } },
  ])('reads $value', ({ value, options }) => {
    expect(readPredictOptions(value)).toEqual({ ok: true, options });
  });

  test.each([
    { value: [], message: 'field "options" must be an object, got an array' },
    { value: 'residues', message: 'field "options" must be an object, got a string' },
    { value: { residues: 'yes' }, message: 'field "options.residues" must be true or false, got a string' },
  ])('rejects $value', ({ value, message }) => {
    expect(readPredictOptions(value)).toEqual({ ok: false, message });
  });

  test('MQTT request options reach every job', () => {
    const payload = JSON.stringify({ id: 'r1', fasta: `>a\n${UBIQUITIN_HUMAN}\n>b\n${UBIQUITIN_HUMAN}\n`, options: { residues: true } });
    const parsed = parseRequest(Buffer.from(payload), { maxPayloadBytes: 10_000 });
    if (!parsed.ok) throw new Error(parsed.message);

    const { jobs } = prepareRecords(parsed.records, parsed.rejected, { minLength: 10 });
    expect(jobs.map((job) => job.options)).toEqual([{ residues: true }, { residues: true }]);
  });

  test('MQTT request with bad option is rejected', () => {
    const payload = JSON.stringify({ id: 'r2', sequence: UBIQUITIN_HUMAN, options: { residues: 1 } });
    const parsed = parseRequest(Buffer.from(payload), { maxPayloadBytes: 10_000 });

    expect(parsed.ok).toBe(false);
    expect(parsed).toMatchObject({ code: 'INVALID_REQUEST', requestId: 'r2' });
  });

  test('JSON file options apply per record', () => {
    const text = JSON.stringify([
      { id: 'with', sequence: UBIQUITIN_HUMAN, options: { residues: true } },
      { id: 'without', sequence: UBIQUITIN_HUMAN },
      { id: 'bad', sequence: UBIQUITIN_HUMAN, options: [] },
    ]);
    const parsed = parseJsonRecords(text);

    expect(parsed.records.map((record) => [record.recordId, record.options])).toEqual([
      ['with', { residues: true }],
      ['without', undefined],
    ]);
    expect(parsed.rejected).toEqual([
      { recordId: 'record-3', recordIndex: 2, code: 'INVALID_REQUEST', message: 'item 3: field "options" must be an object, got an array' },
    ]);
  });
});
