import { readFileSync } from 'node:fs';
import path from 'node:path';

/** One FASTA record of the benchmark proteins. */
export interface BenchProtein {
  id: string;
  residues: string;
}

/**
 * Returns the path of test/fixtures/proteins-500.fasta: 500 UniProt proteins from Debian's
 * metastudent-data package (its header lines say how they were picked).
 */
export function benchProteinsFile(repoRoot: string): string {
  return path.join(repoRoot, 'test', 'fixtures', 'proteins-500.fasta');
}

/** Reads a FASTA file of protein records. Skips `;` comment lines and upper-cases the residues. */
export function readProteins(file: string): BenchProtein[] {
  const proteins: BenchProtein[] = [];
  for (const line of readFileSync(file, 'utf8').split(/\r?\n/)) {
    if (line.startsWith(';') || line.trim() === '') continue;
    if (line.startsWith('>')) proteins.push({ id: line.slice(1).split(/\s/)[0], residues: '' });
    else if (proteins.length > 0) proteins[proteins.length - 1].residues += line.trim().toUpperCase();
  }
  return proteins;
}
