import type { PredictOptions } from '../contracts/prediction';

/**
 * Reads the `"options"` field of a JSON request or inbox record. Absent or null means no options.
 * Keys other than `residues` are ignored, so a sender can add options that a newer daemon reads.
 * Returns the reason when the field is not an object or `residues` is not a boolean.
 */
export function readPredictOptions(value: unknown): { ok: true; options: PredictOptions | undefined } | { ok: false; message: string } {
  if (value === undefined || value === null) return { ok: true, options: undefined };
  if (typeof value !== 'object' || Array.isArray(value)) {
    return { ok: false, message: `field "options" must be an object, got ${describeType(value)}` };
  }

  const { residues } = value as Record<string, unknown>;
  if (residues !== undefined && typeof residues !== 'boolean') {
    return { ok: false, message: `field "options.residues" must be true or false, got ${describeType(residues)}` };
  }
  return { ok: true, options: residues === true ? { residues: true } : undefined };
}

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}
