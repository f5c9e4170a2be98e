import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type { RejectedRecord } from '../contracts/jobs';
import { detectTextFormat, detectUnsupportedFormat, FastaLineParser, rejectInput, type ParsedRecords, type TextFormat } from './fasta';
import { FastqLineParser } from './fastq';
import { isGzip } from './gzip';
import { JsonArraySplitter } from './json-array';
import { LineSplitter } from './lines';
import { addJsonItem, parseSequenceText } from './text';

/** Characters of decoded text that format detection looks at. */
const HEAD_CHARACTERS = 64 * 1024;

/** Result of the first pass over an inbox file, made before any of its records are stored. */
export interface InspectedFile {
  /** Idempotency key: SHA-256 of the file's bytes as stored (compressed when gzip). */
  inputKey: string;
  /** True when the file starts with the gzip magic bytes. */
  gzip: boolean;
  /** Format of the decompressed text. */
  format: TextFormat;
  /** Rejection of the whole file, or null when its records can be read. */
  rejection: RejectedRecord | null;
  /**
   * True when the file is a valid JSON array with at least one item, which is then read one
   * item at a time. Any other JSON input is parsed whole.
   */
  jsonArray?: boolean;
}

/** Thrown when the decompressed bytes of a file pass the limit. */
class TooLargeError extends Error {}

/**
 * Yields the decompressed bytes of a file, read as a stream. `onRawChunk` receives every byte
 * as stored on disk. Stopping the iteration early closes the file.
 */
async function* readFileBytes(file: string, gzip: boolean, onRawChunk: (chunk: Buffer) => void): AsyncGenerator<Buffer> {
  const raw = createReadStream(file);
  if (!gzip) {
    for await (const chunk of raw) {
      onRawChunk(chunk as Buffer);
      yield chunk as Buffer;
    }
    return;
  }

  const tap = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      onRawChunk(chunk);
      callback(null, chunk);
    },
  });
  const gunzip = createGunzip();
  const piped = pipeline(raw, tap, gunzip);
  // A read or zlib error also ends the iteration below with that error, which the caller handles.
  piped.catch(() => undefined);
  for await (const chunk of gunzip) yield chunk as Buffer;
  await piped;
}

/** Yields the decompressed bytes of a file and throws TooLargeError past `maxBytes` of them. */
async function* readBoundedBytes(file: string, gzip: boolean, maxBytes: number, onRawChunk: (chunk: Buffer) => void): AsyncGenerator<Buffer> {
  let total = 0;
  for await (const chunk of readFileBytes(file, gzip, onRawChunk)) {
    total += chunk.length;
    if (total > maxBytes) throw new TooLargeError(`more than ${maxBytes} bytes`);
    yield chunk;
  }
}

async function startsWithGzipMagic(file: string): Promise<boolean> {
  const handle = await fs.open(file, 'r');
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(2), 0, 2, 0);
    return isGzip(buffer.subarray(0, bytesRead));
  } finally {
    await handle.close();
  }
}

/**
 * Reads an inbox file once as a stream, without keeping it in memory, and returns its input
 * key, whether it is gzip, and its text format. The whole file is rejected when it is larger
 * than `maxFileBytes` on disk or decompressed (PAYLOAD_TOO_LARGE), is corrupt or truncated gzip
 * (CORRUPT_GZIP), or is not UTF-8 or is a format that is recognized but not read
 * (UNSUPPORTED_FORMAT). A file rejected before it was read whole gets a key made of its name,
 * size and mtime.
 */
export async function inspectInboxFile(file: string, name: string, maxFileBytes: number): Promise<InspectedFile> {
  const stat = await fs.stat(file);
  const unreadKey = `inbox:oversized:${name}:${stat.size}:${stat.mtimeMs}`;
  if (stat.size > maxFileBytes) {
    const message = `the file has ${stat.size} bytes, more than the maximum of ${maxFileBytes} (inbox.maxFileBytes)`;
    return { inputKey: unreadKey, gzip: false, format: 'unknown', rejection: rejectInput('PAYLOAD_TOO_LARGE', message) };
  }

  const gzip = await startsWithGzipMagic(file);
  const hash = createHash('sha256');
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const jsonArray = new JsonArrayCheck();
  let head = '';
  let utf8 = true;
  try {
    for await (const chunk of readBoundedBytes(file, gzip, maxFileBytes, (raw) => hash.update(raw))) {
      if (!utf8) continue;
      try {
        const text = decoder.decode(chunk, { stream: true });
        if (head.length < HEAD_CHARACTERS) head += text.slice(0, HEAD_CHARACTERS - head.length);
        jsonArray.push(text);
      } catch {
        utf8 = false;
      }
    }
    if (utf8) jsonArray.push(decoder.decode());
  } catch (err) {
    if (err instanceof TooLargeError) {
      const message = `the file decompresses to more than the maximum of ${maxFileBytes} bytes (inbox.maxFileBytes)`;
      return { inputKey: unreadKey, gzip, format: 'unknown', rejection: rejectInput('PAYLOAD_TOO_LARGE', message) };
    }
    if (err instanceof TypeError) {
      utf8 = false;
    } else if (gzip) {
      const message = `the file "${name}" starts with the gzip magic bytes but does not decompress: ${(err as Error).message}`;
      return { inputKey: unreadKey, gzip, format: 'unknown', rejection: rejectInput('CORRUPT_GZIP', message) };
    } else {
      throw err;
    }
  }

  const inputKey = `inbox:${hash.digest('hex')}`;
  const reject = (code: string, message: string): InspectedFile => ({ inputKey, gzip, format: 'unknown', rejection: rejectInput(code, message) });
  if (!utf8) return reject('UNSUPPORTED_FORMAT', 'the file is not UTF-8 text (binary data?); send FASTA, FASTQ, JSON or a bare sequence, optionally gzip-compressed');
  const byContent = detectUnsupportedFormat(head);
  if (byContent !== null) return reject('UNSUPPORTED_FORMAT', `${byContent} input is not supported; convert it to FASTA`);
  const format = detectTextFormat(head);
  return { inputKey, gzip, format, rejection: null, jsonArray: format === 'json' && jsonArray.end() };
}

/**
 * Checks, piece by piece, that a text is a JSON array whose items all parse. It gives up at the
 * first problem, and the file is then parsed whole, which rejects it with JSON.parse's message.
 */
class JsonArrayCheck {
  private splitter: JsonArraySplitter | null = new JsonArraySplitter();

  push(text: string): void {
    if (this.splitter === null) return;
    try {
      for (const item of this.splitter.push(text)) JSON.parse(item);
    } catch {
      this.splitter = null;
    }
  }

  /** Returns true when the whole text was a valid JSON array with at least one item. */
  end(): boolean {
    if (this.splitter === null) return false;
    try {
      this.splitter.end();
    } catch {
      return false;
    }
    return this.splitter.items > 0;
  }
}

/**
 * Splits parsed records into chunks of `chunkRecords` consecutive record indexes, so every
 * record index of a chunk is greater than those of the chunks before it, which lets an
 * interrupted input resume after its highest stored index. Rejections of the whole input
 * (index -1) go into the first chunk.
 */
function* chunksByRecordIndex(parsed: ParsedRecords, chunkRecords: number): Generator<ParsedRecords> {
  let lastIndex = 0;
  for (const record of parsed.records) lastIndex = Math.max(lastIndex, record.index);
  for (const rejection of parsed.rejected) lastIndex = Math.max(lastIndex, rejection.recordIndex);
  for (let start = 0; start <= lastIndex; start += chunkRecords) {
    const end = start + chunkRecords;
    const inChunk = (index: number): boolean => (start === 0 ? index < end : index >= start && index < end);
    yield {
      records: parsed.records.filter((record) => inChunk(record.index)),
      rejected: parsed.rejected.filter((rejection) => inChunk(rejection.recordIndex)),
    };
  }
}

/**
 * Parses an inspected inbox file as a stream and yields its records and rejections in chunks
 * of about `chunkRecords` entries, so a large file never sits whole in memory. FASTA, FASTQ and
 * bare sequences are parsed line by line, and a JSON array item by item.
 * Throws when the file no longer matches its inspection (it grew past the limit or broke).
 */
export async function* readRecordChunks(
  file: string,
  inspected: Pick<InspectedFile, 'gzip' | 'format' | 'jsonArray'>,
  options: { maxFileBytes: number; chunkRecords: number },
): AsyncGenerator<ParsedRecords> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const bytes = readBoundedBytes(file, inspected.gzip, options.maxFileBytes, () => undefined);

  if (inspected.format === 'json' && inspected.jsonArray === true) {
    yield* readJsonArrayChunks(bytes, options.chunkRecords);
    return;
  }
  if (inspected.format === 'json') {
    // NOTE: a JSON object, an empty array and invalid JSON are parsed whole, so such a file takes
    // about its decoded size in memory (at most inbox.maxFileBytes).
    let text = '';
    for await (const chunk of bytes) text += decoder.decode(chunk, { stream: true });
    text += decoder.decode();
    yield* chunksByRecordIndex(parseSequenceText(text), options.chunkRecords);
    return;
  }

  const parser = inspected.format === 'fastq' ? new FastqLineParser() : new FastaLineParser();
  const splitter = new LineSplitter();
  for await (const chunk of bytes) {
    for (const line of splitter.push(decoder.decode(chunk, { stream: true }))) {
      parser.push(line);
      if (parser.pending >= options.chunkRecords) yield parser.take();
    }
  }
  for (const line of splitter.push(decoder.decode())) parser.push(line);
  for (const line of splitter.end()) parser.push(line);
  parser.end();
  yield parser.take();
}

/** Parses the items of a JSON array file one at a time and yields them in chunks of `chunkRecords` items. */
async function* readJsonArrayChunks(bytes: AsyncIterable<Buffer>, chunkRecords: number): AsyncGenerator<ParsedRecords> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const splitter = new JsonArraySplitter();
  let chunk: ParsedRecords = { records: [], rejected: [] };
  let index = 0;
  const addItems = (text: string): void => {
    for (const item of splitter.push(text)) {
      addJsonItem(chunk, parseCheckedItem(item), index);
      index += 1;
    }
  };

  for await (const bytesRead of bytes) {
    addItems(decoder.decode(bytesRead, { stream: true }));
    if (chunk.records.length + chunk.rejected.length >= chunkRecords) {
      yield chunk;
      chunk = { records: [], rejected: [] };
    }
  }
  addItems(decoder.decode());
  splitter.end();
  yield chunk;
}

/** Parses one item of an array that the inspection found valid, so a failure means the file changed. */
function parseCheckedItem(item: string): unknown {
  try {
    return JSON.parse(item) as unknown;
  } catch (err) {
    throw new Error(`the JSON file changed after it was inspected: ${(err as Error).message}`, { cause: err });
  }
}
