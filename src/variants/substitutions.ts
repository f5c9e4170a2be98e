/** The 20 standard amino acids, the alphabet of substitutions and of the full scan. */
export const STANDARD_AMINO_ACIDS = 'ACDEFGHIKLMNPQRSTVWY';

/** One residue replaced by another. */
export interface Substitution {
  /** 1-based position on the normalized sequence. */
  position: number;
  /** Wild-type residue at `position`. */
  from: string;
  /** Residue in the variant. */
  to: string;
}

/** One or more substitutions scored together. */
export interface Variant {
  /** Substitutions joined by ":", as written in the request, e.g. `A123G:K130R`. */
  name: string;
  /** Substitutions sorted by position. */
  substitutions: Substitution[];
}

/** A variant that cannot be applied to the sequence. */
export interface VariantProblem {
  /** The variant as written in the request. */
  variant: string;
  /** Index of the variant in the request's list, from 0. */
  index: number;
  message: string;
}

export type ParsedVariants = { ok: true; variants: Variant[] } | { ok: false; problems: VariantProblem[] };

const SUBSTITUTION_PATTERN = /^([A-Z])([0-9]+)([A-Z])$/;

/**
 * Parses one variant such as `A123G` or `A123G:K130R` against the normalized residues. Positions
 * are 1-based. The wild-type letter must equal the sequence's residue, the new residue must be
 * one of the 20 standard amino acids, and no position may appear twice. A substitution of a
 * residue by itself (`A123A`) is accepted: it scores the wild type and serves as a control.
 * Returns the variant, or the reason it is invalid.
 */
export function parseVariant(text: string, residues: string): { ok: true; variant: Variant } | { ok: false; message: string } {
  const parts = text.trim().split(':');
  const substitutions: Substitution[] = [];

  for (const part of parts) {
    const match = SUBSTITUTION_PATTERN.exec(part.trim());
    if (!match) {
      return { ok: false, message: `"${part.trim()}" is not a substitution; expected a residue, a 1-based position and a residue, such as A123G, joined by ":" for several` };
    }
    const [, from, positionText, to] = match;
    const position = Number(positionText);

    if (position < 1 || position > residues.length) {
      return { ok: false, message: `position ${position} is outside the sequence, whose residues are numbered 1 to ${residues.length}` };
    }
    const actual = residues[position - 1];
    if (actual !== from) {
      return { ok: false, message: `residue ${position} of the sequence is ${actual}, not ${from}` };
    }
    if (!STANDARD_AMINO_ACIDS.includes(to)) {
      return { ok: false, message: `"${to}" is not one of the 20 standard amino acids ${STANDARD_AMINO_ACIDS}` };
    }
    if (substitutions.some((earlier) => earlier.position === position)) {
      return { ok: false, message: `position ${position} is changed more than once` };
    }
    substitutions.push({ position, from, to });
  }

  substitutions.sort((a, b) => a.position - b.position);
  return { ok: true, variant: { name: text.trim(), substitutions } };
}

/** Parses every variant of a request, or returns every invalid one with its index. */
export function parseVariants(texts: readonly string[], residues: string): ParsedVariants {
  const variants: Variant[] = [];
  const problems: VariantProblem[] = [];

  texts.forEach((text, index) => {
    const parsed = parseVariant(text, residues);
    if (parsed.ok) variants.push(parsed.variant);
    else problems.push({ variant: text, index, message: `variant "${text}": ${parsed.message}` });
  });
  return problems.length > 0 ? { ok: false, problems } : { ok: true, variants };
}

/**
 * Lists every single substitution of the sequence: 19 per standard residue, in sequence order
 * and STANDARD_AMINO_ACIDS order. Positions of X (an unknown or non-standard residue) are
 * skipped and returned, 1-based.
 */
export function allSingleSubstitutions(residues: string): { variants: Variant[]; skippedPositions: number[] } {
  const variants: Variant[] = [];
  const skippedPositions: number[] = [];

  for (let index = 0; index < residues.length; index++) {
    const from = residues[index];
    const position = index + 1;
    if (!STANDARD_AMINO_ACIDS.includes(from)) {
      skippedPositions.push(position);
      continue;
    }
    for (const to of STANDARD_AMINO_ACIDS) {
      if (to === from) continue;
      variants.push({ name: `${from}${position}${to}`, substitutions: [{ position, from, to }] });
    }
  }
  return { variants, skippedPositions };
}

/** Returns the count of single substitutions of a sequence without building them. */
export function countSingleSubstitutions(residues: string): number {
  let standard = 0;
  for (const residue of residues) if (STANDARD_AMINO_ACIDS.includes(residue)) standard += 1;
  return standard * (STANDARD_AMINO_ACIDS.length - 1);
}

/** Returns the residues with the variant's substitutions applied. */
export function applyVariant(residues: string, variant: Variant): string {
  const letters = residues.split('');
  for (const { position, to } of variant.substitutions) letters[position - 1] = to;
  return letters.join('');
}
