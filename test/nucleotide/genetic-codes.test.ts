import { codonIndex, geneticCode, GENETIC_CODES, isStartCodon, isStopCodon, supportedGeneticCodes, translateCodon } from '../../src/intake/genetic-codes';

const BASES = ['T', 'C', 'A', 'G'];
const ALL_CODONS = BASES.flatMap((first) => BASES.flatMap((second) => BASES.map((third) => `${first}${second}${third}`)));

function startCodons(id: number): string[] {
  return ALL_CODONS.filter((codon) => isStartCodon(codon, geneticCode(id))).sort();
}

function stopCodons(id: number): string[] {
  return ALL_CODONS.filter((codon) => isStopCodon(codon, geneticCode(id))).sort();
}

describe('genetic code tables', () => {
  test('tables have 64 letters each', () => {
    for (const code of GENETIC_CODES.values()) {
      expect(code.aminoAcids).toHaveLength(64);
      expect(code.starts).toHaveLength(64);
      expect(code.aminoAcids).toMatch(/^[ACDEFGHIKLMNPQRSTVWY*]+$/);
      expect(code.starts).toMatch(/^[-*M]+$/);
    }
  });

  test('supported ids are 1, 4 and 11', () => {
    expect(supportedGeneticCodes()).toEqual([1, 4, 11]);
  });

  test('unknown id is rejected with the supported ids', () => {
    expect(() => geneticCode(2)).toThrow('genetic code 2 is not supported; use one of 1, 4, 11');
  });

  test('codon index follows the TCAG layout', () => {
    expect(codonIndex('TTT')).toBe(0);
    expect(codonIndex('TTC')).toBe(1);
    expect(codonIndex('ATG')).toBe(35);
    expect(codonIndex('GGG')).toBe(63);
    expect(codonIndex('ATN')).toBe(-1);
    expect(codonIndex('AT')).toBe(-1);
  });

  test.each([
    [1, 'TGA', '*'],
    [1, 'TAA', '*'],
    [1, 'TAG', '*'],
    [1, 'ATG', 'M'],
    [1, 'TGG', 'W'],
    [1, 'ATA', 'I'],
    [1, 'AGA', 'R'],
    [1, 'GCT', 'A'],
    [1, 'TTT', 'F'],
    [1, 'CAT', 'H'],
    [1, 'GAG', 'E'],
    [4, 'TGA', 'W'],
    [4, 'TAA', '*'],
    [4, 'TAG', '*'],
    [4, 'ATA', 'I'],
    [4, 'AGA', 'R'],
    [11, 'TGA', '*'],
    [11, 'GTG', 'V'],
    [11, 'TTG', 'L'],
    [11, 'AAA', 'K'],
    [1, 'NNN', 'X'],
    [1, 'ATR', 'X'],
  ])('table %i translates %s to %s', (id, codon, aminoAcid) => {
    expect(translateCodon(codon, geneticCode(id))).toBe(aminoAcid);
  });

  test('table 1 starts are ATG, CTG and TTG', () => {
    expect(startCodons(1)).toEqual(['ATG', 'CTG', 'TTG']);
  });

  test('table 4 starts include TTA and the ATN codons', () => {
    expect(startCodons(4)).toEqual(['ATA', 'ATC', 'ATG', 'ATT', 'CTG', 'GTG', 'TTA', 'TTG']);
  });

  test('table 11 starts include GTG, TTG, CTG and ATN', () => {
    expect(startCodons(11)).toEqual(['ATA', 'ATC', 'ATG', 'ATT', 'CTG', 'GTG', 'TTG']);
  });

  test('stop codons per table', () => {
    expect(stopCodons(1)).toEqual(['TAA', 'TAG', 'TGA']);
    expect(stopCodons(4)).toEqual(['TAA', 'TAG']);
    expect(stopCodons(11)).toEqual(['TAA', 'TAG', 'TGA']);
  });

  test('table 11 translates like table 1', () => {
    expect(geneticCode(11).aminoAcids).toBe(geneticCode(1).aminoAcids);
  });

  test('ambiguous start codon is not a start', () => {
    expect(isStartCodon('ANG', geneticCode(11))).toBe(false);
    expect(isStopCodon('TNA', geneticCode(11))).toBe(false);
  });
});
