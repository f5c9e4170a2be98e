import { hashResidues, normalizeSequence } from '../../src/intake/normalize';

const options = { minLength: 3 };

describe('normalizeSequence', () => {
  test.each([
    ['MKVLLA', 'MKVLLA', []],
    ['MKV LLA\n GGG\t', 'MKVLLAGGG', []],
    ['1 MKVLLA 7 GGG', 'MKVLLAGGG', ['removed 2 digit(s)']],
    ['mkvLLA', 'MKVLLA', ['converted to upper case']],
    ['MK-V..LLA', 'MKVLLA', ['removed 3 gap character(s)']],
    ['MKVLLA*', 'MKVLLA', ['removed trailing *']],
    ['MKVLLA*--', 'MKVLLA', ['removed 2 gap character(s)', 'removed trailing *']],
    ['MKUVLLAU', 'MKXVLLAX', ['mapped 2 U to X']],
    ['BZJUOAAA', 'XXXXXAAA', ['mapped 1 B to X', 'mapped 1 Z to X', 'mapped 1 J to X', 'mapped 1 U to X', 'mapped 1 O to X']],
    ['mkv-u*', 'MKVX', ['converted to upper case', 'removed 1 gap character(s)', 'removed trailing *', 'mapped 1 U to X']],
    ['XXXMKV', 'XXXMKV', []],
  ])('%j becomes %j', (raw, residues, changes) => {
    const result = normalizeSequence(raw, options);

    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value.residues).toBe(residues);
    expect(result.value.changes).toEqual(changes);
    expect(result.value.sequenceHash).toBe(hashResidues(residues));
  });

  test('hash is hex SHA-256 of residues', () => {
    const result = normalizeSequence('mkv', options);

    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value.sequenceHash).toBe('06101e170c22fd1e3eb5769d9ec67e9b76a226c73f20c30aa46e2436cb60abce');
  });

  test('internal stop is invalid residue', () => {
    const result = normalizeSequence('MKV*LLA', options);

    expect(result).toEqual({ ok: false, code: 'INVALID_RESIDUE', message: expect.stringContaining('position 4') as unknown });
  });

  test('two trailing stops reject the first', () => {
    const result = normalizeSequence('MKVLLA**', options);

    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.code).toBe('INVALID_RESIDUE');
    expect(result.message).toContain('position 7');
  });

  test.each([
    ['MKV#LLA', '"#"', 'position 4'],
    ['MK V\nL?A', '"?"', 'position 5'],
    ['MK-V_', '"_"', 'position 5'],
    ['MKVÄLL', '"Ä"', 'position 4'],
    ['MKV\u0007LL', '"\\u0007"', 'position 4'],
  ])('%j names %s at its position', (raw, character, position) => {
    const result = normalizeSequence(raw, options);

    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.code).toBe('INVALID_RESIDUE');
    expect(result.message).toContain(character);
    expect(result.message).toContain(position);
  });

  test('short sequence names both lengths', () => {
    const result = normalizeSequence('MKVLL', { minLength: 10 });

    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.code).toBe('SEQUENCE_TOO_SHORT');
    expect(result.message).toContain('5');
    expect(result.message).toContain('10');
  });

  test('minimum length counts normalized residues', () => {
    expect(normalizeSequence('MKV*', { minLength: 3 }).ok).toBe(true);
    expect(normalizeSequence('MK-*', { minLength: 3 }).ok).toBe(false);
  });

  test.each([[''], ['  \n'], ['---'], ['*'], ['123']])('%j is empty sequence', (raw) => {
    const result = normalizeSequence(raw, options);

    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.code).toBe('EMPTY_SEQUENCE');
  });
});
