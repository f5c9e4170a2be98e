import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { ErrorMessage } from '../../src/contracts/topics';
import type { InboxStore } from '../../src/intake/processor';
import type { IngestAttemptStore } from '../../src/intake/inbox';
import type { ErrorsFile, ResultsFile } from '../../src/intake/results';
import { completeAllPendingJobs, createInboxFixture, listFolder, waitFor, type InboxFixture } from './helpers';

const FASTA = '>p1 first\nMKVLAAGIVGLLLAHHH\n>p2\nACDEFGHIKLMNPQRSTVWY\n';
const FASTQ = '@r1 lane 1\nMKVLAAGIVGLLLA\n+\nIIIIIIIIIIIIII\n@r2\nACDEFGHIKLMNPQ\n+r2\n!!!!!!!!!!!!!!\n';

function inputKeyOf(content: string | Buffer): string {
  return `inbox:${createHash('sha256').update(content).digest('hex')}`;
}

function deliver(fixture: InboxFixture, name: string, content: string | Buffer): void {
  const temp = path.join(fixture.folders.inbox, `.${name}.tmp`);
  writeFileSync(temp, content);
  renameSync(temp, path.join(fixture.folders.inbox, name));
}

function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}

/** Returns the record ids of the stored jobs of a file, in record order, once the file's input is complete. */
async function storedRecordIds(fixture: InboxFixture, name: string, content: string | Buffer): Promise<string[]> {
  const input = await waitFor(() => fixture.store.findInputByKey(inputKeyOf(content)), `the input of ${name}`);
  completeAllPendingJobs(fixture.store);
  return fixture.store.inputOutcomes(input.id).map((outcome) => outcome.recordId);
}

/** Waits for a rejected file in failed/ and returns its error codes and messages. */
async function failedErrors(fixture: InboxFixture, name: string): Promise<ErrorsFile['errors']> {
  await waitFor(() => listFolder(fixture.folders.failed).includes(name), `${name} in failed/`);
  return readJson<ErrorsFile>(path.join(fixture.folders.failed, `${name}.errors.json`)).errors;
}

describe('inbox formats', () => {
  let fixture: InboxFixture;

  beforeEach(() => {
    fixture = createInboxFixture();
  });

  afterEach(async () => {
    await fixture.cleanup();
  });

  test.each([
    ['proteins.fasta.gz', gzipSync(FASTA), ['p1', 'p2']],
    ['proteins.fa', gzipSync(FASTA), ['p1', 'p2']],
    ['reads.fq.gz', gzipSync(FASTQ), ['r1', 'r2']],
    ['reads.fastq', FASTQ, ['r1', 'r2']],
    ['reads.txt', FASTQ, ['r1', 'r2']],
    ['misnamed.fastq.gz', gzipSync(FASTA), ['p1', 'p2']],
    ['batch.json.gz', gzipSync(JSON.stringify([{ id: 'j1', sequence: 'MKVLAAGIVGLL' }, { id: 'j2', sequence: 'ACDEFGHIKLMN' }])), ['j1', 'j2']],
  ])('%s read by content', async (name, content, recordIds) => {
    const watcher = fixture.newWatcher();
    await watcher.start();
    deliver(fixture, name, content);

    expect(await storedRecordIds(fixture, name, content)).toEqual(recordIds);
    expect(await watcher.finalizeCompletedInputs()).toBe(1);
    expect(listFolder(fixture.folders.done)).toEqual([name]);
    const results = readJson<ResultsFile>(path.join(fixture.folders.outbox, `${name}.json`));
    expect(results.counts).toEqual({ records: recordIds.length, done: recordIds.length, failed: 0, rejected: 0 });
  });

  test('gzip FASTQ with a bad record', async () => {
    const content = gzipSync(`${FASTQ}@bad\nMKVLAAGIVGLL\n+\nIIII\n@r4\nMKVLAAGIVGLLW\n+\nIIIIIIIIIIIII\n`);
    const watcher = fixture.newWatcher();
    await watcher.start();
    deliver(fixture, 'mixed.fq.gz', content);

    expect(await storedRecordIds(fixture, 'mixed.fq.gz', content)).toEqual(['r1', 'r2', 'r4']);
    await watcher.finalizeCompletedInputs();
    const errors = readJson<ErrorsFile>(path.join(fixture.folders.failed, 'mixed.fq.gz.errors.json')).errors;
    expect(errors.map((error) => [error.recordId, error.recordIndex, error.code])).toEqual([['bad', 2, 'INVALID_FASTQ']]);
    expect(errors[0].message).toContain('record "bad" (line 9)');
    expect(listFolder(fixture.folders.done)).toEqual(['mixed.fq.gz']);
  });

  test.each([
    ['corrupt.fasta.gz', Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]), Buffer.from('not deflate data at all')])],
    ['truncated.fasta.gz', gzipSync(FASTA.repeat(50)).subarray(0, 60)],
    ['header-only.fa', Buffer.from([0x1f, 0x8b])],
  ])('%s rejected as CORRUPT_GZIP', async (name, content) => {
    const watcher = fixture.newWatcher();
    await watcher.start();
    deliver(fixture, name, content);

    const errors = await failedErrors(fixture, name);
    expect(errors.map((error) => error.code)).toEqual(['CORRUPT_GZIP']);
    expect(errors[0].message).toContain(`"${name}"`);
    expect(fixture.store.countJobsByStatus().pending).toBe(0);
  });

  test('gzip of binary data rejected', async () => {
    const watcher = fixture.newWatcher();
    await watcher.start();
    deliver(fixture, 'blob.fa.gz', gzipSync(Buffer.from([0xff, 0xfe, 0x00, 0x80, 0x81, 0x00])));

    const errors = await failedErrors(fixture, 'blob.fa.gz');
    expect(errors.map((error) => error.code)).toEqual(['UNSUPPORTED_FORMAT']);
    expect(errors[0].message).toContain('not UTF-8');
  });

  test('decompressed size over the limit', async () => {
    const content = gzipSync(`>big\n${'A'.repeat(200_000)}\n`);
    expect(content.length).toBeLessThan(5_000);
    const watcher = fixture.newWatcher({ maxFileBytes: 50_000 });
    await watcher.start();
    deliver(fixture, 'bomb.fasta.gz', content);

    const errors = await failedErrors(fixture, 'bomb.fasta.gz');
    expect(errors.map((error) => error.code)).toEqual(['PAYLOAD_TOO_LARGE']);
    expect(errors[0].message).toContain('decompresses to more than the maximum of 50000 bytes');
  });

  test('errors message sent per chunk', async () => {
    const records = Array.from({ length: 5 }, (_, index) => `>bad${index}\nMKV!LL\n`).join('');
    const watcher = fixture.newWatcher({ chunkRecords: 2 });
    await watcher.start();
    deliver(fixture, 'bad.fasta', records);

    await waitFor(() => listFolder(fixture.folders.failed).includes('bad.fasta'), 'bad.fasta in failed/');
    const messages = fixture.store
      .peekOutbox(100)
      .filter((row) => row.topic === fixture.topics.errors)
      .map((row) => JSON.parse(row.payload) as ErrorMessage);
    expect(messages.map((message) => message.errors.map((error) => error.recordIndex))).toEqual([[0, 1], [2, 3], [4]]);
  });

  test('stop mid-file resumes at start', async () => {
    const records = 2000;
    const content = Array.from({ length: records }, (_, index) => `>s${index}\nMKVLAAGIVG\n`).join('');
    const watcher = fixture.newWatcher({ chunkRecords: 1 });
    await watcher.start();
    deliver(fixture, 'many.fasta', content);

    await waitFor(() => (fixture.store.findInputByKey(inputKeyOf(content))?.jobCount ?? 0) > 0, 'the first chunk of many.fasta');
    await watcher.stop();
    const stopped = fixture.store.findInputByKey(inputKeyOf(content));
    expect(stopped?.jobCount).toBeLessThan(records);
    expect(listFolder(fixture.processing)).toEqual(['many.fasta']);

    await fixture.newWatcher({ chunkRecords: 500 }).start();
    const resumed = fixture.store.findInputByKey(inputKeyOf(content));
    expect(resumed?.jobCount).toBe(records);
    expect(fixture.store.inputOutcomes(resumed?.id ?? -1)).toEqual([]);
    expect(completeAllPendingJobs(fixture.store)).toBe(1000);
    expect(completeAllPendingJobs(fixture.store)).toBe(1000);
    expect(fixture.store.inputOutcomes(resumed?.id ?? -1).map((outcome) => outcome.recordIndex)).toEqual(Array.from({ length: records }, (_, index) => index));
  });

  test('interrupted file resumes without duplicates', async () => {
    const names = Array.from({ length: 7 }, (_, index) => `q${index}`);
    const content = names.map((name, index) => (index === 3 ? `>${name}\nMK*VLL\n` : `>${name}\nMKVLAAGIVG${index}\n`)).join('');
    mkdirSync(fixture.processing, { recursive: true });
    writeFileSync(path.join(fixture.processing, 'seven.fasta'), content);

    // A store whose third chunk fails, as a power cut in the middle of a file would.
    const store = fixture.store;
    let appends = 0;
    const failingStore: InboxStore & IngestAttemptStore = {
      findInputByKey: (key) => store.findInputByKey(key),
      beginInput: (input) => store.beginInput(input),
      appendInputRecords: (inputId, jobs, rejected, publications) => {
        appends += 1;
        if (appends === 3) throw new Error('simulated crash');
        return store.appendInputRecords(inputId, jobs, rejected, publications);
      },
      completeInput: (inputId) => store.completeInput(inputId),
      listCompleteOpenInputs: (source) => store.listCompleteOpenInputs(source),
      inputOutcomePage: (inputId, after, limit) => store.inputOutcomePage(inputId, after, limit),
      inputOutcomeCounts: (inputId) => store.inputOutcomeCounts(inputId),
      inputRejections: (inputId) => store.inputRejections(inputId),
      finishInput: (inputId, publications) => store.finishInput(inputId, publications),
      getInput: (inputId) => store.getInput(inputId),
      recordIngestFailure: (fileKey, message) => store.recordIngestFailure(fileKey, message),
      clearIngestFailures: (fileKey) => store.clearIngestFailures(fileKey),
    };
    const crashed = fixture.newWatcher({ chunkRecords: 2, store: failingStore });
    await crashed.start();
    await crashed.stop();

    const partial = store.findInputByKey(inputKeyOf(content));
    expect(partial?.jobCount).toBe(3);
    expect(partial?.rejectedCount).toBe(1);
    expect(completeAllPendingJobs(store)).toBe(3);
    expect(store.listCompleteOpenInputs('inbox')).toEqual([]);
    expect(listFolder(fixture.processing)).toEqual(['seven.fasta']);

    const restarted = fixture.newWatcher({ chunkRecords: 2 });
    await restarted.start();

    const input = store.findInputByKey(inputKeyOf(content));
    expect(input?.jobCount).toBe(6);
    expect(input?.rejectedCount).toBe(1);
    expect(completeAllPendingJobs(store)).toBe(3);
    expect(await restarted.finalizeCompletedInputs()).toBe(1);
    const results = readJson<ResultsFile>(path.join(fixture.folders.outbox, 'seven.fasta.json'));
    expect(results.records.map((record) => [record.recordIndex, record.recordId, record.status])).toEqual(
      names.map((name, index) => [index, name, index === 3 ? 'rejected' : 'done']),
    );
  });
});
