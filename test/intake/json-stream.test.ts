import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { ParsedRecords } from '../../src/intake/fasta';
import { inspectInboxFile, readRecordChunks } from '../../src/intake/file-input';
import { InvalidJsonArrayError, JsonArraySplitter } from '../../src/intake/json-array';
import { parseJsonRecords } from '../../src/intake/text';
import { seededRandom } from '../faults/harness';

/** Splits `text` into pieces at the given cut points and returns every item the splitter found. */
function splitItems(text: string, cuts: number[]): string[] {
  const splitter = new JsonArraySplitter();
  const items: string[] = [];
  let start = 0;
  for (const cut of [...cuts, text.length]) {
    items.push(...splitter.push(text.slice(start, cut)));
    start = cut;
  }
  splitter.end();
  return items;
}

describe('JsonArraySplitter', () => {
  const text = '\uFEFF [ {"id": "a,]", "sequence": "MK\\"[{"} ,\n{"sequence":"MV"},[1,[2]], "x\\\\" , 3 ]\n';

  test('items split at every cut', () => {
    const expected = ['{"id": "a,]", "sequence": "MK\\"[{"}', '{"sequence":"MV"}', '[1,[2]]', '"x\\\\"', '3'];
    for (let cut = 0; cut <= text.length; cut++) {
      expect(splitItems(text, [cut])).toEqual(expected);
    }
  });

  test('items parse like the whole array', () => {
    const random = seededRandom(7);
    const whole = JSON.parse(text.slice(1)) as unknown[];
    for (let run = 0; run < 50; run++) {
      const cuts = Array.from({ length: 5 }, () => Math.floor(random() * text.length)).sort((a, b) => a - b);
      expect(splitItems(text, cuts).map((item) => JSON.parse(item) as unknown)).toEqual(whole);
    }
  });

  test('empty array has no items', () => {
    expect(splitItems('[ ]', [])).toEqual([]);
  });

  test.each([
    ['{"sequence": "MK"}', 'does not start'],
    ['[1,,2]', 'empty'],
    ['[1,]', 'empty'],
    ['[,1]', 'empty'],
    ['[1] [2]', 'follows'],
    ['[1, 2', 'not closed'],
  ])('%s is rejected', (input, reason) => {
    expect(() => splitItems(input, [])).toThrow(InvalidJsonArrayError);
    expect(() => splitItems(input, [])).toThrow(reason);
  });
});

describe('JSON array inbox files', () => {
  let folder: string;

  beforeEach(() => {
    folder = mkdtempSync(path.join(os.tmpdir(), 'bitnet-edge-json-'));
  });

  afterEach(() => {
    rmSync(folder, { recursive: true, force: true });
  });

  async function readAll(file: string, chunkRecords: number): Promise<ParsedRecords[]> {
    const inspected = await inspectInboxFile(file, path.basename(file), 10_000_000);
    const chunks: ParsedRecords[] = [];
    for await (const chunk of readRecordChunks(file, inspected, { maxFileBytes: 10_000_000, chunkRecords })) chunks.push(chunk);
    return chunks;
  }

  /** Builds a JSON array of `count` objects whose ids are their index. */
  function arrayText(count: number): string {
    const items = Array.from({ length: count }, (_, index) => JSON.stringify({ id: `p${index}`, sequence: `MKVLAAGGHHWQ${'A'.repeat(index % 40)}` }));
    return `[\n${items.join(',\n')}\n]\n`;
  }

  test('records equal the whole parse', async () => {
    const text = arrayText(3000).replace('{"id":"p5",', '{"id":7.5e400,').replace('{"id":"p9",', '"not an object",{"id":"p9",');
    const file = path.join(folder, 'many.json.gz');
    writeFileSync(file, gzipSync(text));

    const chunks = await readAll(file, 500);
    const records = chunks.flatMap((chunk) => chunk.records);
    const rejected = chunks.flatMap((chunk) => chunk.rejected);
    const whole = parseJsonRecords(text);

    expect(records).toEqual(whole.records);
    expect(rejected).toEqual(whole.rejected);
    expect(rejected.map((rejection) => rejection.recordIndex)).toEqual([9]);
    expect(chunks.length).toBeGreaterThan(2);
  });

  test('array is read item by item', async () => {
    const text = arrayText(3000);
    const file = path.join(folder, 'many.json');
    writeFileSync(file, text);
    const inspected = await inspectInboxFile(file, 'many.json', 10_000_000);
    expect(inspected.jsonArray).toBe(true);

    // The file breaks at its end after the inspection. A whole parse would return no record,
    // but the item reader returns the first items before it reaches the break.
    writeFileSync(file, `${text.slice(0, -3)}{`);
    const chunks = readRecordChunks(file, inspected, { maxFileBytes: 10_000_000, chunkRecords: 100 });
    const first = await chunks.next();
    expect(first.done).toBe(false);
    const firstChunk = first.value as ParsedRecords;
    expect(firstChunk.records[0]?.recordId).toBe('p0');
    expect(firstChunk.rejected).toEqual([]);

    await expect((async () => {
      for await (const chunk of chunks) void chunk;
    })()).rejects.toThrow('not closed');
  });

  test.each([
    ['invalid JSON', '[{"sequence": "MKVLAAGGHHWQ"}, {"sequence": }]', 'INVALID_JSON'],
    ['empty array', '[]', 'EMPTY_INPUT'],
  ])('%s parsed whole with its code', async (_name: string, text: string, code: string) => {
    const file = path.join(folder, 'bad.json');
    writeFileSync(file, text);

    const inspected = await inspectInboxFile(file, 'bad.json', 10_000_000);
    const chunks = await readAll(file, 100);

    expect(inspected.jsonArray).toBe(false);
    expect(chunks.flatMap((chunk) => chunk.records)).toEqual([]);
    expect(chunks.flatMap((chunk) => chunk.rejected)).toEqual(parseJsonRecords(text).rejected);
    expect(chunks.flatMap((chunk) => chunk.rejected)[0].code).toBe(code);
  });
});
