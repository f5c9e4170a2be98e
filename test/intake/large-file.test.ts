import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import ts from 'typescript';
import { createLogger } from '../../src/log';
import { Store } from '../../src/store';

const RECORDS = 100_000;
const RESIDUES_PER_RECORD = 350;
const AMINO_ACIDS = 'ACDEFGHIKLMNPQRSTVWY';
const REPOSITORY = path.resolve(__dirname, '../..');

/**
 * V8 old-generation limit of the worker that ingests the file, in MiB. A small heap makes V8
 * collect garbage often, so the process RSS follows the memory that the ingest keeps alive.
 */
const WORKER_OLD_GENERATION_MB = 12;

/**
 * Writes a FASTA file of `RECORDS` records with pseudo-random residues, 1,000 records at a
 * time so the test itself never keeps the file in memory. Returns the SHA-256 of its bytes.
 */
function writeLargeFasta(file: string): string {
  const hash = createHash('sha256');
  const handle = openSync(file, 'w');
  let state = 12345;
  try {
    for (let start = 0; start < RECORDS; start += 1000) {
      let batch = '';
      for (let index = start; index < start + 1000; index += 1) {
        let residues = '';
        for (let position = 0; position < RESIDUES_PER_RECORD; position += 1) {
          state = (state * 1103515245 + 12345) % 2147483648;
          residues += AMINO_ACIDS[state % AMINO_ACIDS.length];
        }
        batch += `>rec${index} synthetic record ${index}\n${residues.slice(0, 175)}\n${residues.slice(175)}\n`;
      }
      hash.update(batch);
      writeSync(handle, batch);
    }
  } finally {
    closeSync(handle);
  }
  return hash.digest('hex');
}

/**
 * Compiles `src/` to CommonJS in `target`, so a worker thread with its own small V8 heap can
 * run the inbox code without ts-jest. `node_modules` is linked in for package imports.
 */
function compileSources(target: string): void {
  const compile = (folder: string): void => {
    for (const entry of readdirSync(path.join(REPOSITORY, folder), { withFileTypes: true })) {
      const relative = path.join(folder, entry.name);
      if (entry.isDirectory()) {
        compile(relative);
        continue;
      }
      if (!entry.name.endsWith('.ts')) continue;
      const output = ts.transpileModule(readFileSync(path.join(REPOSITORY, relative), 'utf8'), {
        compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
        fileName: relative,
      });
      mkdirSync(path.join(target, folder), { recursive: true });
      writeFileSync(path.join(target, relative.replace(/\.ts$/, '.js')), output.outputText);
    }
  };
  compile('src');
  symlinkSync(path.join(REPOSITORY, 'node_modules'), path.join(target, 'node_modules'), 'dir');
}

/**
 * Opens the real Store and processor and reports `ready`, then on `start` ingests one file of
 * `.processing/` and reports the number of onJobsQueued calls.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const path = require('node:path');
const { Store } = require(path.join(workerData.compiled, 'src/store'));
const { InboxProcessor } = require(path.join(workerData.compiled, 'src/intake/processor'));
const { createLogger } = require(path.join(workerData.compiled, 'src/log'));

async function main() {
  const logger = createLogger('silent');
  const store = new Store({ file: workerData.databaseFile, logger });
  store.open();
  let queuedCalls = 0;
  const processor = new InboxProcessor({
    folders: workerData.folders,
    maxFileBytes: workerData.maxFileBytes,
    minLength: 5,
    logger,
    store,
    topics: { errors: 'bitnet-edge/test/errors' },
    onJobsQueued: () => { queuedCalls += 1; },
    clock: () => new Date(),
  });
  await new Promise((resolve) => {
    parentPort.once('message', resolve);
    parentPort.postMessage({ ready: true });
  });
  await processor.ingest(workerData.name);
  store.close();
  parentPort.postMessage({ queuedCalls });
}
main().catch((err) => { throw err; });
`;

describe('large inbox file', () => {
  let root: string;

  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'bitnet-edge-large-'));
  });

  afterEach(() => {
    rmSync(root, { recursive: true, force: true });
  });

  test('100,000 records stored in chunks', async () => {
    const compiled = path.join(root, 'compiled');
    compileSources(compiled);
    const folders = Object.fromEntries(['inbox', 'processing', 'outbox', 'done', 'failed'].map((name) => [name, path.join(root, name)]));
    for (const folder of Object.values(folders)) mkdirSync(folder);
    const digest = writeLargeFasta(path.join(folders.processing, 'large.fasta'));
    const fileBytes = statSync(path.join(folders.processing, 'large.fasta')).size;
    expect(fileBytes).toBeGreaterThan(36_000_000);
    const databaseFile = path.join(root, 'data', 'bitnet-edge.db');

    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { compiled, databaseFile, folders, name: 'large.fasta', maxFileBytes: 64 * 1024 * 1024 },
      resourceLimits: { maxOldGenerationSizeMb: WORKER_OLD_GENERATION_MB, maxYoungGenerationSizeMb: 4 },
    });
    const failure = new Promise<never>((_resolve, reject) => {
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`ingest worker exited with code ${code} before it reported`)));
    });
    const nextMessage = (): Promise<{ ready?: boolean; queuedCalls?: number }> =>
      Promise.race([new Promise<{ ready?: boolean; queuedCalls?: number }>((resolve) => worker.once('message', resolve)), failure]);

    let peakRss = 0;
    let baselineRss = 0;
    let sampler: NodeJS.Timeout | null = null;
    let report: { queuedCalls?: number };
    try {
      expect(await nextMessage()).toEqual({ ready: true });
      // The baseline includes the started worker, so the growth is what the ingest adds.
      baselineRss = process.memoryUsage().rss;
      peakRss = baselineRss;
      sampler = setInterval(() => {
        peakRss = Math.max(peakRss, process.memoryUsage().rss);
      }, 10);
      const done = nextMessage();
      worker.postMessage('start');
      report = await done;
    } finally {
      if (sampler !== null) clearInterval(sampler);
      await worker.terminate();
    }
    const queuedCalls = report.queuedCalls;

    // A whole-file read keeps its bytes and their decoded text in memory at once. In the same
    // worker, readFileSync and one TextDecoder call grew RSS by about 1.7 times this file's size.
    const growth = peakRss - baselineRss;
    process.stdout.write(`large file: ${fileBytes} bytes, peak RSS growth ${growth} bytes\n`);
    expect(growth).toBeLessThan(fileBytes);
    expect(queuedCalls).toBe(RECORDS / 1000);

    const store = new Store({ file: databaseFile, logger: createLogger('silent') });
    store.open();
    try {
      const input = store.findInputByKey(`inbox:${digest}`);
      expect(input?.jobCount).toBe(RECORDS);
      expect(input?.rejectedCount).toBe(0);
      expect(store.countJobsByStatus().pending).toBe(RECORDS);
      const last = store.claimPendingJobs(RECORDS).at(-1);
      expect(last?.recordId).toBe(`rec${RECORDS - 1}`);
      expect(last?.residues).toHaveLength(RESIDUES_PER_RECORD);
    } finally {
      store.close();
    }
  }, 300_000);
});
