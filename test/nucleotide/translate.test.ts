import fc from 'fast-check';
import { geneticCode } from '../../src/intake/genetic-codes';
import {
  detectSequenceKind,
  normalizeNucleotides,
  reverseComplement,
  translate,
  translateSixFrames,
} from '../../src/intake/translate';
import { GFP_AEQVI, INSULIN_HUMAN, LYSOZYME_CHICK, UBIQUITIN_HUMAN } from '../support/proteins';
import { AMINO_ACIDS, backTranslate } from './back-translate';

const IUPAC_DNA = 'ACGTRYSWKMBDHVN';

describe('sequence kind detection', () => {
  test.each([
    ['ATGGCCAAATTTGGGCCCTAA', 'dna'],
    ['atggccaaat ttgggccc\ntaa', 'dna'],
    ['AUGGCCAAAUUUGGGCCCUAA', 'rna'],
    ['ATGNNNNNNCCCRYTAAGGGCCC', 'dna'],
    [UBIQUITIN_HUMAN, 'protein'],
    [GFP_AEQVI, 'protein'],
    [INSULIN_HUMAN, 'protein'],
    [LYSOZYME_CHICK, 'protein'],
    ['', 'protein'],
  ])('%s is %s', (sequence, kind) => {
    expect(detectSequenceKind(sequence)).toBe(kind);
  });

  test('protein rich in nucleotide letters stays protein', () => {
    // Only IUPAC nucleotide letters, but 40 % of them are not A, C, G, T, U or N.
    const protein = 'ACGTRKSWMDHVACGTACGTRKSWMDHVACGTACGT';
    expect(detectSequenceKind(protein)).toBe('protein');
  });

  test('DNA at the 90 percent threshold is DNA', () => {
    expect(detectSequenceKind('ACGTACGTAR')).toBe('dna');
    expect(detectSequenceKind('ACGTACGTRR')).toBe('protein');
  });
});

describe('nucleotide normalization', () => {
  test('removes gaps and whitespace and reads U as T', () => {
    const result = normalizeNucleotides('aug-gcc\n uaa 12');
    expect(result).toEqual({
      ok: true,
      bases: 'ATGGCCTAA',
      changes: ['converted nucleotides to upper case', 'removed 1 gap character(s) from the nucleotides', 'read 2 U as T'],
    });
  });

  test('rejects a letter outside IUPAC with its position', () => {
    const result = normalizeNucleotides('ACGTEACGT');
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.message).toContain('invalid character "E" at position 5');
  });
});

describe('reverse complement', () => {
  test('complements IUPAC codes', () => {
    expect(reverseComplement('ACGT')).toBe('ACGT');
    expect(reverseComplement('AAACCG')).toBe('CGGTTT');
    expect(reverseComplement('RYKMSWBDHVN')).toBe('NBDHVWSKMRY');
    expect(reverseComplement('AUG')).toBe('CAT');
  });

  test('is an involution on IUPAC DNA', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...IUPAC_DNA), { maxLength: 300 }), (letters) => {
        const bases = letters.join('');
        expect(reverseComplement(reverseComplement(bases))).toBe(bases);
      }),
    );
  });
});

describe('translation', () => {
  test('ambiguous codons translate to X', () => {
    expect(translate('ATGNNNGGNTAA', geneticCode(1))).toBe('MXX*');
  });

  test('incomplete last codon is dropped', () => {
    expect(translate('ATGGC', geneticCode(1))).toBe('M');
    expect(translate('ATGGCCA', geneticCode(1), 1)).toBe('WP');
  });

  test.each([1, 4, 11])('table %i back-translation round trip', (id) => {
    const code = geneticCode(id);
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...AMINO_ACIDS), { minLength: 1, maxLength: 200 }),
        fc.array(fc.nat({ max: 5 }), { maxLength: 200 }),
        (residues, choices) => {
          const protein = residues.join('');
          expect(translate(backTranslate(protein, code, choices), code)).toBe(protein);
        },
      ),
    );
  });

  test('six frames translate both strands', () => {
    const bases = 'ATGGCCAAATAG';
    const frames = translateSixFrames(bases, geneticCode(11));

    expect(frames.map((frame) => `${frame.strand}${frame.frame}`)).toEqual(['+1', '+2', '+3', '-1', '-2', '-3']);
    expect(frames[0].protein).toBe('MAK*');
    expect(frames[1].protein).toBe('WPN');
    expect(frames[2].protein).toBe('GQI');
    // The reverse complement is CTATTTGGCCAT.
    expect(frames[3].protein).toBe('LFGH');
    expect(frames[4].protein).toBe('YLA');
    expect(frames[5].protein).toBe('IWP');
  });
});
