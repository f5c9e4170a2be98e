import fc from 'fast-check';
import { formatFasta, parseFasta } from '../../src/intake/fasta';
import { normalizeSequence } from '../../src/intake/normalize';

const recordId = fc.stringMatching(/^[A-Za-z0-9_|.:-]{1,20}$/);
const description = fc.oneof(fc.constant(''), fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9 =_.-]{0,30}[A-Za-z0-9]$/));
const residues = fc.stringMatching(/^[A-Za-z*.-]{1,200}$/).filter((text) => /[A-Za-z]/.test(text));
const record = fc.record({ recordId, description, rawSequence: residues });

describe('intake properties', () => {
  test('parse of format round-trips records', () => {
    fc.assert(
      fc.property(fc.array(record, { minLength: 1, maxLength: 20 }), (records) => {
        const parsed = parseFasta(formatFasta(records));

        expect(parsed.rejected).toEqual([]);
        expect(parsed.records).toEqual(records.map((entry, index) => ({ ...entry, index })));
      }),
    );
  });

  test('round trip with CRLF and wrapped lines', () => {
    fc.assert(
      fc.property(fc.array(record, { minLength: 1, maxLength: 10 }), fc.integer({ min: 1, max: 80 }), (records, width) => {
        const text = records
          .map((entry) => {
            const header = entry.description.length > 0 ? `${entry.recordId} ${entry.description}` : entry.recordId;
            const lines = entry.rawSequence.match(new RegExp(`.{1,${width}}`, 'g')) ?? [];
            return [`>${header}`, ...lines].join('\r\n');
          })
          .join('\r\n');
        const parsed = parseFasta(text);

        expect(parsed.records.map((entry) => entry.rawSequence)).toEqual(records.map((entry) => entry.rawSequence));
      }),
    );
  });

  test('normalization is idempotent', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[A-Za-z0-9 \n.-]{0,200}\*?$/), (raw) => {
        const first = normalizeSequence(raw, { minLength: 1 });
        if (!first.ok) return;
        const second = normalizeSequence(first.value.residues, { minLength: 1 });

        expect(second.ok).toBe(true);
        if (!second.ok) return;
        expect(second.value.residues).toBe(first.value.residues);
        expect(second.value.sequenceHash).toBe(first.value.sequenceHash);
        expect(second.value.changes).toEqual([]);
      }),
    );
  });

  test('normalized residues use the model alphabet', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 100 }), (raw) => {
        const result = normalizeSequence(raw, { minLength: 1 });
        if (result.ok) expect(result.value.residues).toMatch(/^[ACDEFGHIKLMNPQRSTVWYX]+$/);
      }),
    );
  });
});
