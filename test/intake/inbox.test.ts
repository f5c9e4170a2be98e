import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ErrorMessage } from '../../src/contracts/topics';
import type { ErrorsFile, ResultsFile } from '../../src/intake/results';
import { completeAllPendingJobs, createInboxFixture, fakeResult, listFolder, sleep, waitFor, type InboxFixture } from './helpers';

const THREE_RECORDS = '>P1 first\nMKVLLAGGGHHH\n>P2 second\nmkvllaggghhh*\n>P3\nACDEFGHIKLMN\n';

function inputKeyOf(content: string): string {
  return `inbox:${createHash('sha256').update(content).digest('hex')}`;
}

/** Writes a file into the inbox by rename, the way a careful producer delivers it. */
function deliver(fixture: InboxFixture, name: string, content: string | Buffer): void {
  const temp = path.join(fixture.folders.inbox, `.${name}.tmp`);
  writeFileSync(temp, content);
  renameSync(temp, path.join(fixture.folders.inbox, name));
}

function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}

describe('InboxWatcher', () => {
  let fixture: InboxFixture;

  beforeEach(() => {
    fixture = createInboxFixture();
  });

  afterEach(async () => {
    await fixture.cleanup();
  });

  test('creates its folders at start', async () => {
    await fixture.newWatcher().start();

    for (const folder of [fixture.folders.inbox, fixture.processing, fixture.folders.outbox, fixture.folders.done, fixture.folders.failed]) {
      expect(existsSync(folder)).toBe(true);
    }
  });

  test('three-record file becomes three jobs and finishes', async () => {
    const watcher = fixture.newWatcher();
    await watcher.start();
    deliver(fixture, 'three.fasta', THREE_RECORDS);

    const input = await waitFor(() => fixture.store.findInputByKey(inputKeyOf(THREE_RECORDS)), 'the input of three.fasta');
    expect(input.source).toBe('inbox');
    expect(input.origin).toBe('three.fasta');
    expect(input.jobCount).toBe(3);
    expect(input.rejectedCount).toBe(0);
    expect(fixture.queuedCalls).toBe(1);
    expect(listFolder(fixture.processing)).toEqual(['three.fasta']);
    expect(listFolder(fixture.folders.inbox)).toEqual(['.processing']);

    expect(completeAllPendingJobs(fixture.store)).toBe(3);
    expect(await watcher.finalizeCompletedInputs()).toBe(1);

    expect(listFolder(fixture.folders.done)).toEqual(['three.fasta']);
    expect(readFileSync(path.join(fixture.folders.done, 'three.fasta'), 'utf8')).toBe(THREE_RECORDS);
    expect(listFolder(fixture.processing)).toEqual([]);
    expect(listFolder(fixture.folders.failed)).toEqual([]);
    expect(listFolder(fixture.folders.outbox)).toEqual(['three.fasta.json']);

    const results = readJson<ResultsFile>(path.join(fixture.folders.outbox, 'three.fasta.json'));
    expect(results.source).toBe('three.fasta');
    expect(results.counts).toEqual({ records: 3, done: 3, failed: 0, rejected: 0 });
    expect(results.records.map((record) => [record.recordId, record.status])).toEqual([
      ['P1', 'done'],
      ['P2', 'done'],
      ['P3', 'done'],
    ]);
    const second = results.records[1];
    if (second.status === 'rejected') throw new Error('record P2 was rejected');
    expect(second.outcome.changes).toEqual(['converted to upper case', 'removed trailing *']);
    expect(second.outcome.prediction?.modelId).toBe('test-model');

    expect(fixture.store.getInput(input.id)!.status).toBe('finished');
    expect(await watcher.finalizeCompletedInputs()).toBe(0);
  });

  test('bad record gets errors file and error message', async () => {
    const content = '>good1\nMKVLLAGGGHHH\n>bad\nMKV#LLAGGG\n>good2\nACDEFGHIKLMN\n';
    const watcher = fixture.newWatcher();
    await watcher.start();
    deliver(fixture, 'mixed.fa', content);

    const input = await waitFor(() => fixture.store.findInputByKey(inputKeyOf(content)), 'the input of mixed.fa');
    expect(input.jobCount).toBe(2);
    expect(input.rejectedCount).toBe(1);

    const errorRows = fixture.store.peekOutbox(100).filter((row) => row.topic === fixture.topics.errors);
    expect(errorRows).toHaveLength(1);
    expect(errorRows[0].qos).toBe(1);
    const message = JSON.parse(errorRows[0].payload) as ErrorMessage;
    expect(message.source).toBe('inbox');
    expect(message.origin).toBe('mixed.fa');
    expect(message.errors.map((error) => [error.recordId, error.recordIndex, error.code])).toEqual([['bad', 1, 'INVALID_RESIDUE']]);

    completeAllPendingJobs(fixture.store);
    expect(await watcher.finalizeCompletedInputs()).toBe(1);

    expect(listFolder(fixture.folders.done)).toEqual(['mixed.fa']);
    expect(listFolder(fixture.folders.failed)).toEqual(['mixed.fa.errors.json']);
    const errors = readJson<ErrorsFile>(path.join(fixture.folders.failed, 'mixed.fa.errors.json'));
    expect(errors.source).toBe('mixed.fa');
    expect(errors.errors).toHaveLength(1);
    expect(errors.errors[0]).toMatchObject({ recordId: 'bad', recordIndex: 1, code: 'INVALID_RESIDUE' });
    expect(errors.errors[0].message).toContain('"#"');

    const results = readJson<ResultsFile>(path.join(fixture.folders.outbox, 'mixed.fa.json'));
    expect(results.counts).toEqual({ records: 3, done: 2, failed: 0, rejected: 1 });
    expect(results.records.map((record) => record.status)).toEqual(['done', 'rejected', 'done']);
  });

  test('failed job listed in errors file', async () => {
    const content = '>a\nMKVLLAGGGHHH\n>b\nACDEFGHIKLMN\n';
    const watcher = fixture.newWatcher();
    await watcher.start();
    deliver(fixture, 'jobs.faa', content);
    await waitFor(() => fixture.store.findInputByKey(inputKeyOf(content)), 'the input of jobs.faa');

    const [first, second] = fixture.store.claimPendingJobs(10);
    fixture.store.completeJob(first.id, fakeResult(), []);
    fixture.store.failJob(second.id, 'INFERENCE_FAILED', 'the model failed on this sequence', []);
    await watcher.finalizeCompletedInputs();

    expect(listFolder(fixture.folders.done)).toEqual(['jobs.faa']);
    const errors = readJson<ErrorsFile>(path.join(fixture.folders.failed, 'jobs.faa.errors.json'));
    expect(errors.errors).toEqual([{ recordId: 'b', recordIndex: 1, code: 'INFERENCE_FAILED', message: 'the model failed on this sequence' }]);
  });

  test('file without valid records goes to failed', async () => {
    const content = '>short\nMKV\n>empty\n';
    const watcher = fixture.newWatcher();
    await watcher.start();
    deliver(fixture, 'nothing.fasta', content);

    await waitFor(() => listFolder(fixture.folders.failed).includes('nothing.fasta'), 'nothing.fasta in failed/');
    const input = fixture.store.findInputByKey(inputKeyOf(content))!;
    expect(input.status).toBe('finished');
    expect(input.jobCount).toBe(0);
    expect(fixture.store.inputRejections(input.id).map((rejection) => rejection.code)).toEqual(['SEQUENCE_TOO_SHORT', 'EMPTY_SEQUENCE']);
    expect(fixture.queuedCalls).toBe(0);
    expect(listFolder(fixture.folders.done)).toEqual([]);
    expect(listFolder(fixture.folders.failed)).toEqual(['nothing.fasta', 'nothing.fasta.errors.json']);
    expect(readJson<ResultsFile>(path.join(fixture.folders.outbox, 'nothing.fasta.json')).counts).toEqual({ records: 2, done: 0, failed: 0, rejected: 2 });
  });

  test('oversized file goes to failed unread', async () => {
    const watcher = fixture.newWatcher({ maxFileBytes: 100 });
    await watcher.start();
    deliver(fixture, 'big.fasta', `>big\n${'A'.repeat(200)}\n`);

    // A file is linked into failed/ before it is unlinked from .processing/.
    await waitFor(() => listFolder(fixture.folders.failed).includes('big.fasta') && listFolder(fixture.processing).length === 0, 'big.fasta in failed/');
    const errors = readJson<ErrorsFile>(path.join(fixture.folders.failed, 'big.fasta.errors.json'));
    expect(errors.errors.map((error) => error.code)).toEqual(['PAYLOAD_TOO_LARGE']);
    expect(errors.errors[0].message).toContain('100');
    expect(listFolder(fixture.folders.done)).toEqual([]);
    expect(listFolder(fixture.processing)).toEqual([]);
  });

  test.each([
    ['record.txt', 'LOCUS       AB000263   368 bp    mRNA\n', 'GenBank'],
    ['entry.txt', 'ID   INS_HUMAN               Reviewed;         110 AA.\n', 'EMBL/Swiss-Prot'],
    ['family.txt', '# STOCKHOLM 1.0\nseq1 MKV\n//\n', 'Stockholm'],
    ['blob.fasta', Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x00]), 'UTF-8'],
  ])('%s rejected as unsupported', async (name, content, formatName) => {
    const watcher = fixture.newWatcher();
    await watcher.start();
    deliver(fixture, name, content);

    await waitFor(() => listFolder(fixture.folders.failed).includes(name), `${name} in failed/`);
    const errors = readJson<ErrorsFile>(path.join(fixture.folders.failed, `${name}.errors.json`));
    expect(errors.errors.map((error) => error.code)).toEqual(['UNSUPPORTED_FORMAT']);
    expect(errors.errors[0].message).toContain(formatName);
  });

  test('JSON file accepted', async () => {
    const content = JSON.stringify([{ id: 'q1', sequence: 'MKVLLAGGGHHH' }, { sequence: 'ACDEFGHIKLMN' }]);
    const watcher = fixture.newWatcher();
    await watcher.start();
    deliver(fixture, 'batch.json', content);

    const input = await waitFor(() => fixture.store.findInputByKey(inputKeyOf(content)), 'the input of batch.json');
    expect(input.jobCount).toBe(2);
  });

  test('crash-left file in processing is recovered', async () => {
    mkdirSync(fixture.processing, { recursive: true });
    writeFileSync(path.join(fixture.processing, 'left.fasta'), THREE_RECORDS);

    const watcher = fixture.newWatcher();
    await watcher.start();

    const input = fixture.store.findInputByKey(inputKeyOf(THREE_RECORDS));
    expect(input).not.toBeNull();
    expect(input!.jobCount).toBe(3);
    expect(input!.origin).toBe('left.fasta');

    completeAllPendingJobs(fixture.store);
    expect(await watcher.finalizeCompletedInputs()).toBe(1);
    expect(listFolder(fixture.folders.done)).toEqual(['left.fasta']);
  });

  test('restart re-ingests without duplicate jobs', async () => {
    const first = fixture.newWatcher();
    await first.start();
    deliver(fixture, 'again.fasta', THREE_RECORDS);
    const input = await waitFor(() => fixture.store.findInputByKey(inputKeyOf(THREE_RECORDS)), 'the input of again.fasta');
    await first.stop();
    expect(listFolder(fixture.processing)).toEqual(['again.fasta']);

    const second = fixture.newWatcher();
    await second.start();
    expect(fixture.store.findInputByKey(inputKeyOf(THREE_RECORDS))!.id).toBe(input.id);
    expect(completeAllPendingJobs(fixture.store)).toBe(3);

    await second.stop();
    const third = fixture.newWatcher();
    await third.start();
    expect(listFolder(fixture.folders.done)).toEqual(['again.fasta']);
    expect(listFolder(fixture.folders.outbox)).toEqual(['again.fasta.json']);
  });

  test('file still being written is not claimed early', async () => {
    const watcher = fixture.newWatcher({ settleMs: 1000 });
    await watcher.start();
    const file = path.join(fixture.folders.inbox, 'growing.fasta');
    const chunks = Array.from({ length: 8 }, (_, index) => `>chunk${index}\nMKVLLAGGGHHH\n`);

    for (const chunk of chunks) {
      appendFileSync(file, chunk);
      await sleep(100);
      expect(listFolder(fixture.processing)).toEqual([]);
    }

    const content = chunks.join('');
    const input = await waitFor(() => fixture.store.findInputByKey(inputKeyOf(content)), 'the input of growing.fasta');
    expect(input.jobCount).toBe(8);
    expect(fixture.store.listCompleteOpenInputs('inbox')).toEqual([]);
  });

  test('ignored names stay in the inbox', async () => {
    const ignored = ['.hidden.fasta', 'upload.fasta.tmp', 'upload.fasta.part', 'edit.fasta.swp', 'backup.fasta~', 'notes.csv'];
    mkdirSync(fixture.folders.inbox, { recursive: true });
    for (const name of ignored) writeFileSync(path.join(fixture.folders.inbox, name), THREE_RECORDS);

    const watcher = fixture.newWatcher();
    await watcher.start();
    const marker = '>marker\nMKVLLAGGGHHH\n';
    deliver(fixture, 'marker.fasta', marker);
    await waitFor(() => fixture.store.findInputByKey(inputKeyOf(marker)), 'the input of marker.fasta');
    await sleep(300);

    expect(listFolder(fixture.folders.inbox)).toEqual(['.processing', ...ignored].sort());
    expect(fixture.store.findInputByKey(inputKeyOf(THREE_RECORDS))).toBeNull();
  });

  test('name collision gets numeric suffix', async () => {
    const watcher = fixture.newWatcher();
    await watcher.start();
    const contents = ['>a\nMKVLLAGGGHHH\n', '>a\nACDEFGHIKLMN\n'];

    for (const content of contents) {
      deliver(fixture, 'same.fasta', content);
      await waitFor(() => fixture.store.findInputByKey(inputKeyOf(content)), 'the input of same.fasta');
      completeAllPendingJobs(fixture.store);
      await watcher.finalizeCompletedInputs();
    }

    expect(listFolder(fixture.folders.done)).toEqual(['same-1.fasta', 'same.fasta']);
    expect(readFileSync(path.join(fixture.folders.done, 'same.fasta'), 'utf8')).toBe(contents[0]);
    expect(readFileSync(path.join(fixture.folders.done, 'same-1.fasta'), 'utf8')).toBe(contents[1]);
    expect(listFolder(fixture.folders.outbox)).toEqual(['same.fasta-1.json', 'same.fasta.json']);
  });

  test('duplicate content under another name finishes both', async () => {
    const watcher = fixture.newWatcher();
    await watcher.start();
    deliver(fixture, 'one.fasta', THREE_RECORDS);
    await waitFor(() => fixture.store.findInputByKey(inputKeyOf(THREE_RECORDS)), 'the input of one.fasta');
    deliver(fixture, 'two.fasta', THREE_RECORDS);
    await waitFor(() => listFolder(fixture.processing).includes('two.fasta') && listFolder(fixture.folders.inbox).length === 1, 'two.fasta claimed');
    // The watcher runs this after the claim and ingest of two.fasta, while one.fasta's jobs still wait.
    expect(await watcher.finalizeCompletedInputs()).toBe(0);

    expect(completeAllPendingJobs(fixture.store)).toBe(3);
    expect(await watcher.finalizeCompletedInputs()).toBe(1);
    expect(listFolder(fixture.folders.done)).toEqual(['one.fasta', 'two.fasta']);
    expect(listFolder(fixture.folders.outbox)).toEqual(['one.fasta.json', 'two.fasta.json']);

    deliver(fixture, 'three.fasta', THREE_RECORDS);
    await waitFor(() => listFolder(fixture.folders.done).includes('three.fasta'), 'three.fasta in done/');
    expect(listFolder(fixture.folders.outbox)).toContain('three.fasta.json');
  });

  test('duplicate of complete input finishes without a call', async () => {
    const watcher = fixture.newWatcher();
    await watcher.start();
    deliver(fixture, 'first.fasta', THREE_RECORDS);
    await waitFor(() => fixture.store.findInputByKey(inputKeyOf(THREE_RECORDS)), 'the input of first.fasta');
    expect(completeAllPendingJobs(fixture.store)).toBe(3);

    deliver(fixture, 'copy.fasta', THREE_RECORDS);
    // A file is linked into done/ before it is unlinked from .processing/.
    await waitFor(() => listFolder(fixture.folders.done).length === 2 && listFolder(fixture.processing).length === 0, 'both files in done/');

    expect(listFolder(fixture.folders.done)).toEqual(['copy.fasta', 'first.fasta']);
    expect(listFolder(fixture.folders.outbox)).toEqual(['copy.fasta.json', 'first.fasta.json']);
    expect(listFolder(fixture.processing)).toEqual([]);
  });

  test('stop is idempotent', async () => {
    const watcher = fixture.newWatcher();
    await watcher.start();
    await watcher.stop();
    await watcher.stop();

    deliver(fixture, 'late.fasta', THREE_RECORDS);
    await sleep(300);
    expect(listFolder(fixture.processing)).toEqual([]);
  });
});
