import { createHash } from 'node:crypto';
import type { NormalizedSequence } from '../contracts/jobs';
import type { ErrorCode } from '../errors';

export type NormalizeResult = { ok: true; value: NormalizedSequence } | { ok: false; code: ErrorCode; message: string };

/** Ambiguous or rare amino-acid letters that the model reads as X, in the order they are reported. */
const MAPPED_TO_X = ['B', 'Z', 'J', 'U', 'O'] as const;

const GAP_CHARACTERS = new Set(['-', '.']);

/** Returns the hex SHA-256 of the normalized residues. */
export function hashResidues(residues: string): string {
  return createHash('sha256').update(residues, 'utf8').digest('hex');
}

function describeCharacter(character: string): string {
  return JSON.stringify(character);
}

function isLetter(character: string): boolean {
  return /^[A-Za-z]$/.test(character);
}

/**
 * Normalizes one protein sequence. Whitespace and digits are removed, letters are upper-cased,
 * gap characters (`-`, `.`) and one trailing `*` are removed, and B, Z, J, U and O become X.
 * Any other character, and a `*` that is not the last residue, is INVALID_RESIDUE. Positions
 * in messages are 1-based and count the sequence after whitespace and digits are removed,
 * gap characters included. `changes` lists every step that altered the text except the
 * removal of whitespace, which every multi-line FASTA record needs.
 */
export function normalizeSequence(raw: string, options: { minLength: number }): NormalizeResult {
  const characters = Array.from(raw).filter((character) => !/^\s$/u.test(character) && !/^[0-9]$/.test(character));
  const digitCount = Array.from(raw).filter((character) => /^[0-9]$/.test(character)).length;

  let lastResidue = characters.length - 1;
  while (lastResidue >= 0 && GAP_CHARACTERS.has(characters[lastResidue])) lastResidue -= 1;
  const hasTrailingStop = lastResidue >= 0 && characters[lastResidue] === '*';

  let hasLowerCase = false;
  let gapCount = 0;
  let residues = '';
  for (let i = 0; i < characters.length; i += 1) {
    const character = characters[i];
    const position = i + 1;
    if (GAP_CHARACTERS.has(character)) {
      gapCount += 1;
      continue;
    }
    if (character === '*') {
      if (hasTrailingStop && i === lastResidue) continue;
      return { ok: false, code: 'INVALID_RESIDUE', message: `invalid stop symbol "*" at position ${position}. Only a final "*" is allowed` };
    }
    if (!isLetter(character)) {
      return { ok: false, code: 'INVALID_RESIDUE', message: `invalid character ${describeCharacter(character)} at position ${position}. Expected amino-acid letters, gaps (- or .) or a final *` };
    }
    if (character !== character.toUpperCase()) hasLowerCase = true;
    residues += character.toUpperCase();
  }

  if (residues.length === 0) {
    return { ok: false, code: 'EMPTY_SEQUENCE', message: 'the sequence has no residues' };
  }

  const changes: string[] = [];
  if (digitCount > 0) changes.push(`removed ${digitCount} digit(s)`);
  if (hasLowerCase) changes.push('converted to upper case');
  if (gapCount > 0) changes.push(`removed ${gapCount} gap character(s)`);
  if (hasTrailingStop) changes.push('removed trailing *');

  for (const letter of MAPPED_TO_X) {
    const count = residues.split(letter).length - 1;
    if (count > 0) changes.push(`mapped ${count} ${letter} to X`);
  }
  residues = residues.replace(/[BZJUO]/g, 'X');

  if (residues.length < options.minLength) {
    return {
      ok: false,
      code: 'SEQUENCE_TOO_SHORT',
      message: `the sequence has ${residues.length} residues, fewer than the minimum of ${options.minLength}`,
    };
  }

  return { ok: true, value: { residues, sequenceHash: hashResidues(residues), changes } };
}
