import { isStartCodon, isStopCodon, type GeneticCode } from './genetic-codes';
import { reverseComplement, translate, type Frame, type Strand } from './translate';

/** An open reading frame found on one of the six frames of a DNA sequence. */
export interface OpenReadingFrame {
  strand: Strand;
  frame: Frame;
  /** First nucleotide, 1-based on the forward strand. On the `-` strand it is the ORF's 3' end. */
  start: number;
  /** Last nucleotide, 1-based and inclusive on the forward strand, stop codon included. */
  end: number;
  /** Translation from the start codon, read as M, to the last codon before the stop. */
  protein: string;
  startCodon: string;
  /** False for an ORF that runs to the sequence end without a stop codon. */
  hasStopCodon: boolean;
}

export interface OrfOptions {
  code: GeneticCode;
  /** Minimum ORF length in codons, start codon included and stop codon excluded. */
  minCodons: number;
  /** Also report an ORF that reaches the end of its strand without a stop codon. */
  allowOpenEnd: boolean;
}

/**
 * Length of the shortest run of N that an ORF never spans. A run of this many N hides at least
 * one whole codon, so the reading frame and any stop codon in it are unknown. Shorter runs
 * (one or two ambiguous bases) stay inside an ORF and their codons translate to X.
 */
export const N_RUN_BREAK_LENGTH = 3;

/** Marks the positions of `bases` that lie in a run of at least N_RUN_BREAK_LENGTH N. */
function markNRuns(bases: string): Uint8Array {
  const mask = new Uint8Array(bases.length);
  let runStart = -1;
  for (let i = 0; i <= bases.length; i += 1) {
    if (i < bases.length && bases[i] === 'N') {
      if (runStart < 0) runStart = i;
      continue;
    }
    if (runStart >= 0 && i - runStart >= N_RUN_BREAK_LENGTH) mask.fill(1, runStart, i);
    runStart = -1;
  }
  return mask;
}

/**
 * Finds the ORFs of one frame of `strandBases`. An ORF opens at the first start codon after
 * the previous stop (so nested starts give no shorter ORFs) and closes at the next stop codon
 * in frame. A codon that touches an N run discards the open ORF.
 */
function findFrameOrfs(strandBases: string, nRuns: Uint8Array, strand: Strand, frame: Frame, options: OrfOptions): OpenReadingFrame[] {
  const length = strandBases.length;
  const orfs: OpenReadingFrame[] = [];
  let open = -1;
  let lastCodonEnd = -1;

  const emit = (endExclusive: number, hasStopCodon: boolean): void => {
    const codons = (endExclusive - open) / 3 - (hasStopCodon ? 1 : 0);
    if (codons < options.minCodons) return;

    const protein = `M${translate(strandBases.slice(open + 3, open + 3 * codons), options.code)}`;
    const start = strand === '+' ? open + 1 : length - endExclusive + 1;
    const end = strand === '+' ? endExclusive : length - open;
    orfs.push({ strand, frame, start, end, protein, startCodon: strandBases.slice(open, open + 3), hasStopCodon });
  };

  for (let i = frame - 1; i + 3 <= length; i += 3) {
    lastCodonEnd = i + 3;
    if (nRuns[i] === 1 || nRuns[i + 1] === 1 || nRuns[i + 2] === 1) {
      open = -1;
      continue;
    }
    const codon = strandBases.slice(i, i + 3);
    if (open < 0) {
      if (isStartCodon(codon, options.code)) open = i;
      continue;
    }
    if (isStopCodon(codon, options.code)) {
      emit(i + 3, true);
      open = -1;
    }
  }
  if (open >= 0 && options.allowOpenEnd) emit(lastCodonEnd, false);
  return orfs;
}

/**
 * Finds the ORFs of at least `minCodons` codons on all six frames of upper-case IUPAC DNA,
 * ordered by start coordinate, then strand and frame. Start codons must be unambiguous
 * (A, C, G, T only) and the genetic code's start codons all translate as M.
 */
export function findOrfs(bases: string, options: OrfOptions): OpenReadingFrame[] {
  const reverse = reverseComplement(bases);
  const strands: Array<{ strand: Strand; strandBases: string }> = [
    { strand: '+', strandBases: bases },
    { strand: '-', strandBases: reverse },
  ];
  const frames: Frame[] = [1, 2, 3];

  const orfs: OpenReadingFrame[] = [];
  for (const { strand, strandBases } of strands) {
    const nRuns = markNRuns(strandBases);
    for (const frame of frames) orfs.push(...findFrameOrfs(strandBases, nRuns, strand, frame, options));
  }

  return orfs.sort((a, b) => a.start - b.start || a.strand.localeCompare(b.strand) || a.frame - b.frame);
}
