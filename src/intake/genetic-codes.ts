/**
 * Genetic code tables in the layout of "NCBI Genetic Codes" (the NCBI Taxonomy page "The
 * Genetic Codes"): 64 codons ordered by first, second and third base, each base in the order
 * T, C, A, G. `aminoAcids` has one letter per codon with `*` for a stop codon. `starts` has `M`
 * for a start codon and `-` (or `*`) otherwise.
 */
export interface GeneticCode {
  /** NCBI translation table id (`transl_table`). */
  id: number;
  name: string;
  aminoAcids: string;
  starts: string;
}

const BASE_ORDER = 'TCAG';

/** Genetic codes by NCBI table id. */
export const GENETIC_CODES: ReadonlyMap<number, GeneticCode> = new Map(
  [
    {
      id: 1,
      name: 'Standard',
      aminoAcids: 'FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG',
      starts: '---M------**--*----M---------------M----------------------------',
    },
    {
      id: 4,
      name: 'Mold, Protozoan, and Coelenterate Mitochondrial Code and the Mycoplasma/Spiroplasma Code',
      aminoAcids: 'FFLLSSSSYY**CCWWLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG',
      starts: '--MM------**-------M------------MMMM---------------M------------',
    },
    {
      id: 11,
      name: 'Bacterial, Archaeal and Plant Plastid Code',
      aminoAcids: 'FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG',
      starts: '---M------**--*----M------------MMMM---------------M------------',
    },
  ].map((code) => [code.id, code]),
);

/** Returns the ids of the supported genetic codes, in ascending order. */
export function supportedGeneticCodes(): number[] {
  return [...GENETIC_CODES.keys()].sort((a, b) => a - b);
}

/** Returns the genetic code with NCBI table id `id`, or throws a RangeError that lists the supported ids. */
export function geneticCode(id: number): GeneticCode {
  const code = GENETIC_CODES.get(id);
  if (code === undefined) {
    throw new RangeError(`genetic code ${id} is not supported; use one of ${supportedGeneticCodes().join(', ')}`);
  }
  return code;
}

/**
 * Returns the 0-63 index of a codon of the letters T, C, A and G (upper case) in the NCBI
 * layout, or -1 when the codon has another letter or is not three letters long.
 */
export function codonIndex(codon: string): number {
  if (codon.length !== 3) return -1;
  let index = 0;
  for (const base of codon) {
    const value = BASE_ORDER.indexOf(base);
    if (value < 0) return -1;
    index = index * 4 + value;
  }
  return index;
}

/** Returns the amino acid of an unambiguous DNA codon (`*` for a stop), or X for any other codon. */
export function translateCodon(codon: string, code: GeneticCode): string {
  const index = codonIndex(codon);
  return index < 0 ? 'X' : code.aminoAcids[index];
}

/** True when `codon` is an unambiguous DNA codon that the code lists as a start codon. */
export function isStartCodon(codon: string, code: GeneticCode): boolean {
  const index = codonIndex(codon);
  return index >= 0 && code.starts[index] === 'M';
}

/** True when `codon` is an unambiguous DNA codon that the code translates to a stop. */
export function isStopCodon(codon: string, code: GeneticCode): boolean {
  const index = codonIndex(codon);
  return index >= 0 && code.aminoAcids[index] === '*';
}
