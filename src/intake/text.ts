import type { SequenceRecord } from '../contracts/jobs';
import { defaultRecordId, detectTextFormat, detectUnsupportedFormat, parseFasta, rejectInput, type ParsedRecords } from './fasta';
import { parseFastq } from './fastq';
import { readPredictOptions } from './options';

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Reads `{ "id"?, "sequence", "options"? }` into a record, or returns the reason it cannot. */
function readSequenceObject(value: unknown, index: number): SequenceRecord | string {
  if (!isObject(value)) return 'expected an object with a "sequence" string';
  const { id, sequence } = value;
  if (typeof sequence !== 'string') return 'missing "sequence" string';
  if (id !== undefined && typeof id !== 'string' && typeof id !== 'number') return '"id" must be a string or a number';
  const options = readPredictOptions(value.options);
  if (!options.ok) return options.message;

  const recordId = id === undefined || String(id).trim() === '' ? defaultRecordId(index) : String(id).trim();
  return { recordId, description: '', rawSequence: sequence, index, ...(options.options ? { options: options.options } : {}) };
}

/**
 * Parses a JSON input: `{ "id"?, "sequence", "options"? }`, `{ "fasta", "options"? }`, or an
 * array of `{ "id"?, "sequence", "options"? }` objects (one record each, in order). The options
 * of a `fasta` object apply to each of its records.
 */
export function parseJsonRecords(text: string): ParsedRecords {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text.startsWith('\uFEFF') ? text.slice(1) : text);
  } catch (err) {
    return { records: [], rejected: [rejectInput('INVALID_JSON', `the input is not valid JSON: ${(err as Error).message}`)] };
  }

  if (isObject(parsed) && typeof parsed.fasta === 'string') {
    const options = readPredictOptions(parsed.options);
    if (!options.ok) return { records: [], rejected: [rejectInput('INVALID_REQUEST', options.message)] };
    const fasta = parseFasta(parsed.fasta);
    const shared = options.options;
    return shared ? { ...fasta, records: fasta.records.map((record) => ({ ...record, options: shared })) } : fasta;
  }

  const items = Array.isArray(parsed) ? parsed : [parsed];
  if (items.length === 0) return { records: [], rejected: [rejectInput('EMPTY_INPUT', 'the JSON array contains no records')] };

  const result: ParsedRecords = { records: [], rejected: [] };
  items.forEach((item, index) => addJsonItem(result, item, index));
  return result;
}

/** Adds the record of item `index` of a JSON array to `result`, or its INVALID_REQUEST rejection. */
export function addJsonItem(result: ParsedRecords, item: unknown, index: number): void {
  const record = readSequenceObject(item, index);
  if (typeof record === 'string') {
    result.rejected.push({ recordId: defaultRecordId(index), recordIndex: index, code: 'INVALID_REQUEST', message: `item ${index + 1}: ${record}` });
  } else {
    result.records.push(record);
  }
}

/**
 * Parses a sequence input of any accepted text format (FASTA, FASTQ, a bare sequence, JSON).
 * Formats that are recognized but not read become one UNSUPPORTED_FORMAT rejection
 * that names the format.
 */
export function parseSequenceText(text: string): ParsedRecords {
  const unsupported = detectUnsupportedFormat(text);
  if (unsupported !== null) {
    return { records: [], rejected: [rejectInput('UNSUPPORTED_FORMAT', `${unsupported} input is not supported; convert it to FASTA`)] };
  }
  const format = detectTextFormat(text);
  if (format === 'json') return parseJsonRecords(text);
  if (format === 'fastq') return parseFastq(text);
  return parseFasta(text);
}
