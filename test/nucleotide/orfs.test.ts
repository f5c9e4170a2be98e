import fc from 'fast-check';
import { geneticCode, isStartCodon, isStopCodon } from '../../src/intake/genetic-codes';
import { findOrfs, N_RUN_BREAK_LENGTH, type OpenReadingFrame } from '../../src/intake/orfs';
import { reverseComplement, translate } from '../../src/intake/translate';
import { GFP_AEQVI, UBIQUITIN_HUMAN } from '../support/proteins';
import { dnaFor } from './back-translate';

const TABLE_11 = geneticCode(11);

/** Returns the ORF's nucleotides read 5' to 3' on its own strand. */
function orfBases(bases: string, orf: OpenReadingFrame): string {
  const forward = bases.slice(orf.start - 1, orf.end);
  return orf.strand === '+' ? forward : reverseComplement(forward);
}

describe('ORF finding', () => {
  test('gene on the forward strand', () => {
    const gene = `ATG${dnaFor(UBIQUITIN_HUMAN.slice(1))}TAA`;
    const bases = `CC${gene}GGGG`;

    const orfs = findOrfs(bases, { code: TABLE_11, minCodons: 50, allowOpenEnd: false });

    expect(orfs).toHaveLength(1);
    expect(orfs[0]).toEqual({
      strand: '+',
      frame: 3,
      start: 3,
      end: 2 + gene.length,
      protein: UBIQUITIN_HUMAN,
      startCodon: 'ATG',
      hasStopCodon: true,
    });
  });

  test('gene on the reverse strand', () => {
    const gene = `ATG${dnaFor(UBIQUITIN_HUMAN.slice(1))}TGA`;
    const bases = `A${reverseComplement(gene)}CC`;

    const orfs = findOrfs(bases, { code: TABLE_11, minCodons: 50, allowOpenEnd: false });
    const reverse = orfs.filter((orf) => orf.strand === '-');

    expect(reverse).toHaveLength(1);
    expect(reverse[0].protein).toBe(UBIQUITIN_HUMAN);
    expect(reverse[0].start).toBe(2);
    expect(reverse[0].end).toBe(1 + gene.length);
    // The gene starts at position 3 of the reverse complement (CC come first there).
    expect(reverse[0].frame).toBe(3);
  });

  test('alternative start codon reads as M', () => {
    const gene = `GTG${dnaFor(UBIQUITIN_HUMAN.slice(1))}TAG`;

    const [orf] = findOrfs(gene, { code: TABLE_11, minCodons: 50, allowOpenEnd: false });

    expect(orf.startCodon).toBe('GTG');
    expect(orf.protein).toBe(UBIQUITIN_HUMAN);
  });

  test('table 1 does not start at ATT', () => {
    const gene = `ATT${dnaFor(UBIQUITIN_HUMAN.slice(1))}TAG`;

    expect(findOrfs(gene, { code: TABLE_11, minCodons: 50, allowOpenEnd: false }).filter((orf) => orf.strand === '+')).toHaveLength(1);
    expect(findOrfs(gene, { code: geneticCode(1), minCodons: 50, allowOpenEnd: false }).filter((orf) => orf.strand === '+' && orf.frame === 1)).toHaveLength(0);
  });

  test('TGA does not stop table 4', () => {
    const gene = `ATG${dnaFor(UBIQUITIN_HUMAN.slice(1, 40))}TGA${dnaFor(UBIQUITIN_HUMAN.slice(40))}TAA`;

    const [table4] = findOrfs(gene, { code: geneticCode(4), minCodons: 60, allowOpenEnd: false }).filter((orf) => orf.strand === '+');
    const table11 = findOrfs(gene, { code: TABLE_11, minCodons: 60, allowOpenEnd: false }).filter((orf) => orf.strand === '+' && orf.frame === 1);

    expect(table4.protein).toBe(`${UBIQUITIN_HUMAN.slice(0, 40)}W${UBIQUITIN_HUMAN.slice(40)}`);
    expect(table11).toHaveLength(0);
  });

  test('minimum length excludes the stop codon', () => {
    const gene = `ATG${dnaFor('A'.repeat(9))}TAA`;

    expect(findOrfs(gene, { code: TABLE_11, minCodons: 10, allowOpenEnd: false }).filter((orf) => orf.strand === '+')).toHaveLength(1);
    expect(findOrfs(gene, { code: TABLE_11, minCodons: 11, allowOpenEnd: false }).filter((orf) => orf.strand === '+')).toHaveLength(0);
  });

  test('open end is reported only when allowed', () => {
    const open = `ATG${dnaFor(UBIQUITIN_HUMAN.slice(1))}GC`;

    expect(findOrfs(open, { code: TABLE_11, minCodons: 50, allowOpenEnd: false }).filter((orf) => orf.strand === '+')).toHaveLength(0);
    const [orf] = findOrfs(open, { code: TABLE_11, minCodons: 50, allowOpenEnd: true }).filter((found) => found.strand === '+');
    expect(orf.hasStopCodon).toBe(false);
    expect(orf.end).toBe(3 * UBIQUITIN_HUMAN.length);
    expect(orf.protein).toBe(UBIQUITIN_HUMAN);
  });

  test('N run breaks an ORF but a single N does not', () => {
    const left = dnaFor(GFP_AEQVI.slice(1, 100));
    const right = dnaFor(GFP_AEQVI.slice(100));
    const options = { code: TABLE_11, minCodons: 150, allowOpenEnd: false };

    const withRun = findOrfs(`ATG${left}${'N'.repeat(N_RUN_BREAK_LENGTH)}${right}TAA`, options).filter((orf) => orf.strand === '+');
    const withOneN = findOrfs(`ATG${left}ANA${right}TAA`, options).filter((orf) => orf.strand === '+');

    expect(withRun).toHaveLength(0);
    expect(withOneN).toHaveLength(1);
    expect(withOneN[0].protein).toBe(`${GFP_AEQVI.slice(0, 100)}X${GFP_AEQVI.slice(100)}`);
  });

  test('nested start codons give one ORF', () => {
    const gene = `ATG${dnaFor('MMMM')}${dnaFor(UBIQUITIN_HUMAN.slice(1))}TAA`;
    const orfs = findOrfs(gene, { code: TABLE_11, minCodons: 50, allowOpenEnd: false }).filter((orf) => orf.strand === '+' && orf.frame === 1);

    expect(orfs).toHaveLength(1);
    expect(orfs[0].start).toBe(1);
  });

  test('reported ORFs satisfy the ORF rules', () => {
    const dna = fc.array(fc.constantFrom('A', 'C', 'G', 'T', 'A', 'C', 'G', 'T', 'N', 'R'), { minLength: 0, maxLength: 600 }).map((letters) => letters.join(''));
    fc.assert(
      fc.property(dna, fc.constantFrom(1, 4, 11), fc.integer({ min: 1, max: 30 }), fc.boolean(), (bases, id, minCodons, allowOpenEnd) => {
        const code = geneticCode(id);
        for (const orf of findOrfs(bases, { code, minCodons, allowOpenEnd })) {
          expect(orf.start).toBeGreaterThanOrEqual(1);
          expect(orf.end).toBeLessThanOrEqual(bases.length);
          expect((orf.end - orf.start + 1) % 3).toBe(0);

          const codingBases = orfBases(bases, orf);
          const codons = codingBases.match(/.{3}/g) ?? [];
          const first = codons[0] ?? '';
          expect(isStartCodon(first, code)).toBe(true);
          expect(orf.startCodon).toBe(first);

          const last = codons[codons.length - 1] ?? '';
          expect(isStopCodon(last, code)).toBe(orf.hasStopCodon);
          const sense = orf.hasStopCodon ? codons.slice(0, -1) : codons;
          expect(sense.some((codon) => isStopCodon(codon, code))).toBe(false);
          expect(sense.length).toBeGreaterThanOrEqual(minCodons);
          if (!orf.hasStopCodon) expect(allowOpenEnd).toBe(true);

          expect(codingBases).not.toContain('N'.repeat(N_RUN_BREAK_LENGTH));
          expect(orf.protein).toBe(`M${translate(sense.slice(1).join(''), code)}`);

          const strandLength = bases.length;
          const offset = orf.strand === '+' ? orf.start - 1 : strandLength - orf.end;
          expect(offset % 3).toBe(orf.frame - 1);
        }
      }),
      { numRuns: 300 },
    );
  });
});
