import type { RejectedRecord, SequenceRecord } from '../contracts/jobs';
import { ERROR_CODES, type ErrorCode } from '../errors';
import { defaultRecordId, detectUnsupportedFormat, INPUT_RECORD_INDEX, parseFasta, type ParsedRecords } from '../intake/fasta';
import { parseFastq } from '../intake/fastq';
import { unpackPayload } from '../intake/gzip';
import { readPredictOptions } from '../intake/options';
import type { SequenceKind } from '../intake/translate';
import type { PredictOptions } from '../contracts/prediction';

/**
 * A request payload after parsing. `ok: true` can carry rejected FASTA records next to the
 * valid ones, and has at least one record or rejection. `ok: false` rejects the whole payload.
 * `kind` is the request's `"kind"`, or null when each record's kind is detected by its alphabet.
 */
export type ParsedRequest =
  | { ok: true; requestId: string | null; kind: SequenceKind | null; records: SequenceRecord[]; rejected: RejectedRecord[] }
  | { ok: false; requestId: string | null; code: ErrorCode; message: string };

export interface ParseRequestOptions {
  /** Largest accepted payload in bytes. */
  maxPayloadBytes: number;
}

const SUPPORTED_KINDS: readonly SequenceKind[] = ['protein', 'dna', 'rna'];

function isSequenceKind(kind: string): kind is SequenceKind {
  return (SUPPORTED_KINDS as readonly string[]).includes(kind);
}

/**
 * Parses a request payload: a JSON object `{ "id"?, "sequence" }` or `{ "id"?, "fasta" }`
 * (with optional `"kind"`: `"protein"`, `"dna"` or `"rna"`, and `"options"`), raw FASTA or
 * FASTQ text, or a bare sequence. A payload that starts with the gzip magic bytes is
 * decompressed first, up to `maxPayloadBytes` of output.
 * Residues are not validated here, because sequence normalization does that.
 */
export function parseRequest(payload: Buffer, options: ParseRequestOptions): ParsedRequest {
  const unpacked = unpackPayload(payload, options.maxPayloadBytes);
  if (!unpacked.ok) return reject(null, unpacked.code, unpacked.message);
  const bytes = unpacked.bytes;

  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    return reject(null, 'UNSUPPORTED_FORMAT', 'payload is not valid UTF-8 text; send JSON, FASTA, FASTQ or a bare sequence, optionally gzip-compressed');
  }

  const trimmed = text.trim();
  if (trimmed.length === 0) {
    return reject(null, 'EMPTY_INPUT', 'payload is empty');
  }
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    return parseJsonRequest(trimmed);
  }
  const unsupported = detectUnsupportedFormat(trimmed);
  if (unsupported !== null) {
    return reject(null, 'UNSUPPORTED_FORMAT', `${unsupported} payloads are not supported over MQTT; send FASTA, FASTQ, JSON or a bare sequence`);
  }
  if (trimmed.startsWith('>') || trimmed.startsWith(';')) {
    return fromFasta(null, trimmed, null);
  }
  if (trimmed.startsWith('@')) {
    return fromFasta(null, trimmed, null, parseFastq);
  }
  return fromSequence(null, trimmed, null);
}

function parseJsonRequest(text: string): ParsedRequest {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return reject(null, 'INVALID_JSON', `payload is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return reject(null, 'INVALID_REQUEST', 'request must be a JSON object with a "sequence" or "fasta" field');
  }
  const request = value as Record<string, unknown>;

  const id = request.id;
  if (id !== undefined && id !== null && typeof id !== 'string' && typeof id !== 'number') {
    return reject(null, 'INVALID_REQUEST', `field "id" must be a string or a number, got ${describeType(id)}`);
  }
  const requestId = id === undefined || id === null ? null : String(id);

  const kind = request.kind;
  let sequenceKind: SequenceKind | null = null;
  if (kind !== undefined && kind !== null) {
    if (typeof kind !== 'string') {
      return reject(requestId, 'INVALID_REQUEST', `field "kind" must be a string, got ${describeType(kind)}`);
    }
    if (!isSequenceKind(kind)) {
      return reject(requestId, 'UNSUPPORTED_FORMAT', `kind "${kind}" is not supported; use "protein", "dna" or "rna", or leave it out to detect it`);
    }
    sequenceKind = kind;
  }

  const requestOptions = readPredictOptions(request.options);
  if (!requestOptions.ok) return reject(requestId, 'INVALID_REQUEST', requestOptions.message);
  const options = requestOptions.options;

  const { sequence, fasta } = request;
  if (sequence !== undefined && fasta !== undefined) {
    return reject(requestId, 'INVALID_REQUEST', 'request has both "sequence" and "fasta"; send one of them');
  }
  if (sequence !== undefined) {
    if (typeof sequence !== 'string') {
      return reject(requestId, 'INVALID_REQUEST', `field "sequence" must be a string, got ${describeType(sequence)}`);
    }
    return withOptions(fromSequence(requestId, sequence, sequenceKind), options);
  }
  if (fasta !== undefined) {
    if (typeof fasta !== 'string') {
      return reject(requestId, 'INVALID_REQUEST', `field "fasta" must be a string, got ${describeType(fasta)}`);
    }
    return withOptions(fromFasta(requestId, fasta, sequenceKind), options);
  }
  return reject(requestId, 'INVALID_REQUEST', 'request has neither a "sequence" nor a "fasta" field');
}

/** Attaches the request's options to every record of a parsed request. */
function withOptions(parsed: ParsedRequest, options: PredictOptions | undefined): ParsedRequest {
  if (!parsed.ok || !options) return parsed;
  return { ...parsed, records: parsed.records.map((record) => ({ ...record, options })) };
}

/** Wraps a bare sequence as one record. An empty sequence is kept, so normalization rejects it with its own code. */
function fromSequence(requestId: string | null, sequence: string, kind: SequenceKind | null): ParsedRequest {
  const record: SequenceRecord = { recordId: requestId ?? defaultRecordId(0), description: '', rawSequence: sequence, index: 0 };
  return { ok: true, requestId, kind, records: [record], rejected: [] };
}

function fromFasta(
  requestId: string | null,
  text: string,
  kind: SequenceKind | null,
  parse: (text: string) => ParsedRecords = parseFasta,
): ParsedRequest {
  const { records, rejected } = parse(text);
  if (records.length === 0) {
    // With no records and only rejections of the whole input, the request itself is rejected.
    const inputLevel = rejected.find((entry) => entry.recordIndex === INPUT_RECORD_INDEX);
    const onlyInputLevel = rejected.every((entry) => entry.recordIndex === INPUT_RECORD_INDEX);
    if (inputLevel && onlyInputLevel) return reject(requestId, toErrorCode(inputLevel.code), inputLevel.message);
    if (rejected.length === 0) return reject(requestId, 'EMPTY_INPUT', 'FASTA text contains no records');
  }
  return { ok: true, requestId, kind, records, rejected };
}

function reject(requestId: string | null, code: ErrorCode, message: string): ParsedRequest {
  return { ok: false, requestId, code, message };
}

function toErrorCode(code: string): ErrorCode {
  return code in ERROR_CODES ? (code as ErrorCode) : 'INVALID_FASTA';
}

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}
