import { allSingleSubstitutions, applyVariant, countSingleSubstitutions, parseVariant, parseVariants } from '../../src/variants/substitutions';

const SEQUENCE = 'MKTAYIAKQR';

describe('variant parsing', () => {
  test('single substitution', () => {
    const parsed = parseVariant('K2R', SEQUENCE);

    expect(parsed).toEqual({ ok: true, variant: { name: 'K2R', substitutions: [{ position: 2, from: 'K', to: 'R' }] } });
  });

  test('substitutions are sorted by position', () => {
    const parsed = parseVariant('R10A:M1V', SEQUENCE);

    expect(parsed.ok && parsed.variant.name).toBe('R10A:M1V');
    expect(parsed.ok && parsed.variant.substitutions.map((substitution) => substitution.position)).toEqual([1, 10]);
  });

  test.each([
    ['A2R', 'residue 2 of the sequence is K, not A'],
    ['K0R', 'position 0 is outside the sequence, whose residues are numbered 1 to 10'],
    ['R11A', 'position 11 is outside the sequence, whose residues are numbered 1 to 10'],
    ['K2X', '"X" is not one of the 20 standard amino acids ACDEFGHIKLMNPQRSTVWY'],
    ['K2R:K2A', 'position 2 is changed more than once'],
    ['k2r', '"k2r" is not a substitution; expected a residue, a 1-based position and a residue, such as A123G, joined by ":" for several'],
    ['K2R:', '"" is not a substitution; expected a residue, a 1-based position and a residue, such as A123G, joined by ":" for several'],
  ])('%s is rejected', (text, message) => {
    expect(parseVariant(text, SEQUENCE)).toEqual({ ok: false, message });
  });

  test('list reports every bad variant', () => {
    const parsed = parseVariants(['K2R', 'A2R', 'Q9E', 'Z1A'], SEQUENCE);

    expect(parsed.ok).toBe(false);
    expect(!parsed.ok && parsed.problems.map((problem) => [problem.index, problem.variant])).toEqual([
      [1, 'A2R'],
      [3, 'Z1A'],
    ]);
    expect(!parsed.ok && parsed.problems[0].message).toBe('variant "A2R": residue 2 of the sequence is K, not A');
  });

  test('synonymous substitution is accepted', () => {
    expect(parseVariant('K2K', SEQUENCE).ok).toBe(true);
  });
});

describe('single-substitution scan', () => {
  test('19 substitutions per standard residue', () => {
    const { variants, skippedPositions } = allSingleSubstitutions('MXK');

    expect(variants).toHaveLength(2 * 19);
    expect(countSingleSubstitutions('MXK')).toBe(2 * 19);
    expect(skippedPositions).toEqual([2]);
    expect(variants.map((variant) => variant.name).slice(0, 3)).toEqual(['M1A', 'M1C', 'M1D']);
    expect(variants.every((variant) => variant.substitutions[0].from !== variant.substitutions[0].to)).toBe(true);
  });

  test('variant applies to the sequence', () => {
    const parsed = parseVariant('M1V:R10A', SEQUENCE);
    if (!parsed.ok) throw new Error(parsed.message);

    expect(applyVariant(SEQUENCE, parsed.variant)).toBe('VKTAYIAKQA');
  });
});
