import type { ErrorMessage } from '../contracts/topics';
import type { ErrorCode } from '../errors';
import { unpackPayload } from '../intake/gzip';
import { normalizeSequence } from '../intake/normalize';
import { allSingleSubstitutions, countSingleSubstitutions, parseVariants, type Variant } from './substitutions';

/** A valid variant-scoring request. */
export interface VariantRequest {
  /** The request's `id`, or null when it had none. */
  id: string | null;
  /** Normalized residues. Variant positions refer to them. */
  residues: string;
  /** Changes that normalization made to the sequence. */
  changes: string[];
  variants: Variant[];
  /** True for `"variants": "all"`. */
  all: boolean;
  /** 1-based positions left out of `"all"` because their residue is X. */
  skippedPositions: number[];
  /** Request options, with their defaults filled in. */
  options: { predictions: boolean; prefixCache: boolean };
}

/** One error of a rejected request, in the shape of the errors topic. */
export type RequestError = ErrorMessage['errors'][number];

export type ParsedVariantRequest = { ok: true; request: VariantRequest } | { ok: false; id: string | null; errors: RequestError[] };

export interface VariantRequestLimits {
  /** Largest accepted payload in bytes, before and after gzip decompression. */
  maxPayloadBytes: number;
  /** Shortest accepted protein, in residues. */
  minLength: number;
  /** Most variants scored for one request, `"all"` included. */
  maxVariants: number;
}

/**
 * Parses a request payload: a JSON object `{ "id"?, "sequence", "variants", "options"? }`,
 * optionally gzip-compressed. `variants` is a list of substitutions such as `A123G` or
 * `A123G:K130R`, or `"all"` for every single substitution. `options.predictions` (default
 * true) adds the heads' prediction to each variant, and `options.prefixCache` (default true)
 * allows reusing cached past keys and values. Other option keys are ignored.
 */
export function parseVariantPayload(payload: Buffer, limits: VariantRequestLimits): ParsedVariantRequest {
  const unpacked = unpackPayload(payload, limits.maxPayloadBytes);
  if (!unpacked.ok) return reject(null, unpacked.code, unpacked.message);
  const bytes = unpacked.bytes;

  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    return reject(null, 'INVALID_JSON', `payload is not valid UTF-8 JSON: ${(err as Error).message}`);
  }
  return parseVariantRequest(value, limits);
}

/** Checks a parsed JSON request and normalizes its sequence. See parseVariantPayload for the fields. */
export function parseVariantRequest(value: unknown, limits: Omit<VariantRequestLimits, 'maxPayloadBytes'>): ParsedVariantRequest {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return reject(null, 'INVALID_REQUEST', 'request must be a JSON object with "sequence" and "variants" fields');
  }
  const fields = value as Record<string, unknown>;

  const rawId = fields.id;
  if (rawId !== undefined && rawId !== null && typeof rawId !== 'string' && typeof rawId !== 'number') {
    return reject(null, 'INVALID_REQUEST', `field "id" must be a string or a number, got ${describeType(rawId)}`);
  }
  const id = rawId === undefined || rawId === null ? null : String(rawId);

  const options = readOptions(fields.options);
  if (typeof options === 'string') return reject(id, 'INVALID_REQUEST', options);

  if (typeof fields.sequence !== 'string') {
    return reject(id, 'INVALID_REQUEST', `field "sequence" must be a string of amino-acid letters, got ${describeType(fields.sequence)}`);
  }
  const normalized = normalizeSequence(fields.sequence, { minLength: limits.minLength });
  if (!normalized.ok) return reject(id, normalized.code, normalized.message);
  const { residues, changes } = normalized.value;

  const listed = fields.variants;
  if (listed === 'all') {
    const count = countSingleSubstitutions(residues);
    if (count > limits.maxVariants) {
      return reject(id, 'TOO_MANY_VARIANTS', `"all" is ${count} single substitutions for ${residues.length} residues, above the limit of ${limits.maxVariants}; list the variants or score a shorter sequence`);
    }
    const { variants, skippedPositions } = allSingleSubstitutions(residues);
    return { ok: true, request: { id, residues, changes, variants, all: true, skippedPositions, options } };
  }

  if (!Array.isArray(listed) || listed.length === 0 || !listed.every((item): item is string => typeof item === 'string')) {
    return reject(id, 'INVALID_REQUEST', 'field "variants" must be "all" or a non-empty list of strings such as ["A123G", "A123G:K130R"]');
  }
  if (listed.length > limits.maxVariants) {
    return reject(id, 'TOO_MANY_VARIANTS', `request lists ${listed.length} variants, above the limit of ${limits.maxVariants}`);
  }
  const parsed = parseVariants(listed, residues);
  if (!parsed.ok) {
    const errors = parsed.problems.map((problem) => ({ recordId: problem.variant, recordIndex: problem.index, code: 'INVALID_VARIANT', message: problem.message }));
    return { ok: false, id, errors };
  }
  return { ok: true, request: { id, residues, changes, variants: parsed.variants, all: false, skippedPositions: [], options } };
}

function readOptions(value: unknown): VariantRequest['options'] | string {
  const defaults = { predictions: true, prefixCache: true };
  if (value === undefined || value === null) return defaults;
  if (typeof value !== 'object' || Array.isArray(value)) return `field "options" must be an object, got ${describeType(value)}`;

  const fields = value as Record<string, unknown>;
  for (const key of ['predictions', 'prefixCache'] as const) {
    if (fields[key] !== undefined && typeof fields[key] !== 'boolean') {
      return `field "options.${key}" must be true or false, got ${describeType(fields[key])}`;
    }
  }
  return { predictions: fields.predictions !== false, prefixCache: fields.prefixCache !== false };
}

function reject(id: string | null, code: ErrorCode, message: string): ParsedVariantRequest {
  return { ok: false, id, errors: [{ recordId: id ?? 'request', recordIndex: 0, code, message }] };
}

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}
