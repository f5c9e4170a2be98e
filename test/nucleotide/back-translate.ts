import { geneticCode, type GeneticCode } from '../../src/intake/genetic-codes';

const BASES = ['T', 'C', 'A', 'G'];
const ALL_CODONS = BASES.flatMap((first) => BASES.flatMap((second) => BASES.map((third) => `${first}${second}${third}`)));

/** Lists the codons of each amino acid (and of `*`) in a genetic code. */
export function codonsByAminoAcid(code: GeneticCode): Map<string, string[]> {
  const table = new Map<string, string[]>();
  ALL_CODONS.forEach((codon, index) => {
    const aminoAcid = code.aminoAcids[index];
    table.set(aminoAcid, [...(table.get(aminoAcid) ?? []), codon]);
  });
  return table;
}

/** Back-translates a protein, choosing for residue i the codon choices[i] modulo the number of its codons. */
export function backTranslate(protein: string, code: GeneticCode, choices: number[] = []): string {
  const table = codonsByAminoAcid(code);
  return Array.from(protein)
    .map((aminoAcid, index) => {
      const codons = table.get(aminoAcid);
      if (codons === undefined) throw new Error(`no codon for ${aminoAcid} in table ${code.id}`);
      return codons[(choices[index] ?? 0) % codons.length];
    })
    .join('');
}

/** The 20 amino acids. */
export const AMINO_ACIDS = 'ACDEFGHIKLMNPQRSTVWY';

/** Back-translates with table 11 and first-codon choices: a quick DNA for a protein. */
export function dnaFor(protein: string): string {
  return backTranslate(protein, geneticCode(11));
}
