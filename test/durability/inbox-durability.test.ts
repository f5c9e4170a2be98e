import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Store } from '../../src/store';
import { createInboxFixture, listFolder, sleep, waitFor, type InboxFixture } from '../intake/helpers';

const FIRST = '>A1\nMKVLAAGGHHWQ\n';
const SECOND = '>B1\nMSTNPKPQRKTK\n>B2\nMADEEKLPPGWE\n';

function inputKeyOf(content: string): string {
  return `inbox:${createHash('sha256').update(content).digest('hex')}`;
}

describe('inbox durability', () => {
  let fixture: InboxFixture;

  beforeEach(() => {
    fixture = createInboxFixture();
  });

  afterEach(async () => {
    await fixture.cleanup();
  });

  test('files before and during watching are stored once', async () => {
    // Written before the watcher exists, so no watch event reports it: the start rescan must.
    mkdirSync(fixture.folders.inbox, { recursive: true });
    writeFileSync(path.join(fixture.folders.inbox, 'before.fasta'), FIRST);
    await fixture.newWatcher({ settleMs: 30, rescanMs: 100 }).start();
    await waitFor(() => fixture.store.findInputByKey(inputKeyOf(FIRST)), 'the input of the file written before start');

    // Written while watching: the watch event and several rescans all see the name, and the
    // file must still be claimed once. NOTE: fs.watch events cannot be switched off here, so
    // this does not prove the rescan alone would find it.
    const temp = path.join(fixture.folders.inbox, '.during.fasta.tmp');
    writeFileSync(temp, SECOND);
    renameSync(temp, path.join(fixture.folders.inbox, 'during.fasta'));
    await waitFor(() => fixture.store.findInputByKey(inputKeyOf(SECOND)), 'the input of the file written while watching');
    await sleep(400);

    const before = fixture.store.findInputByKey(inputKeyOf(FIRST));
    const during = fixture.store.findInputByKey(inputKeyOf(SECOND));
    expect(before?.origin).toBe('before.fasta');
    expect(before?.jobCount).toBe(1);
    expect(during?.origin).toBe('during.fasta');
    expect(during?.jobCount).toBe(2);
    expect(fixture.store.countJobsByStatus().pending).toBe(3);
    expect(fixture.queuedCalls).toBe(2);
    expect(listFolder(fixture.processing)).toEqual(['before.fasta', 'during.fasta']);
    expect(listFolder(fixture.folders.inbox)).toEqual(['.processing']);
  });

  test('file that keeps failing ingest is quarantined', async () => {
    // A directory with an inbox name left in .processing: every read fails with EISDIR.
    mkdirSync(path.join(fixture.processing, 'broken.fasta'), { recursive: true });
    writeFileSync(path.join(fixture.processing, 'good.fasta'), FIRST);
    await fixture.newWatcher({ maxAttempts: 3, retryDelayMs: 30 }).start();

    const errorsFile = path.join(fixture.folders.failed, 'broken.fasta.errors.json');
    await waitFor(() => listFolder(fixture.folders.failed).includes('broken.fasta.errors.json'), 'the quarantine error file');
    await waitFor(() => listFolder(fixture.folders.failed).includes('broken.fasta'), 'the quarantined file in failed/');

    const content = JSON.parse(readFileSync(errorsFile, 'utf8')) as { source: string; inputId: null; attempts: number; errors: Array<{ code: string; message: string }> };
    expect(content.source).toBe('broken.fasta');
    expect(content.inputId).toBeNull();
    expect(content.attempts).toBe(3);
    expect(content.errors).toHaveLength(1);
    expect(content.errors[0].code).toBe('QUARANTINED');
    expect(content.errors[0].message).toContain('EISDIR');
    expect(statSync(path.join(fixture.folders.failed, 'broken.fasta')).isDirectory()).toBe(true);
    expect(listFolder(fixture.processing)).toEqual(['good.fasta']);
    expect(fixture.store.findInputByKey(inputKeyOf(FIRST))?.jobCount).toBe(1);
  });

  test('ingest attempts survive a restart', async () => {
    mkdirSync(path.join(fixture.processing, 'broken.fasta'), { recursive: true });

    // Two failed attempts, then a stop, as if the daemon restarted before the retry.
    const first = fixture.newWatcher({ maxAttempts: 3, retryDelayMs: 60_000 });
    await first.start();
    await first.stop();
    const second = fixture.newWatcher({ maxAttempts: 3, retryDelayMs: 60_000 });
    await second.start();
    await second.stop();
    expect(listFolder(fixture.folders.failed)).toEqual([]);

    // The third attempt, in a third process lifetime, is the last one.
    await fixture.newWatcher({ maxAttempts: 3, retryDelayMs: 60_000 }).start();
    await waitFor(() => listFolder(fixture.folders.failed).includes('broken.fasta') && listFolder(fixture.processing).length === 0, 'the quarantined file in failed/');

    const content = JSON.parse(readFileSync(path.join(fixture.folders.failed, 'broken.fasta.errors.json'), 'utf8')) as { attempts: number };
    expect(content.attempts).toBe(3);
    expect(listFolder(fixture.processing)).toEqual([]);
  });

  test('successful ingest forgets earlier failures', async () => {
    const store = fixture.store;
    let lookups = 0;
    // The first lookup of the input key fails, as a locked database would, and the retry succeeds.
    const flakyStore = Object.assign(Object.create(store) as Store, {
      findInputByKey: (key: string) => {
        lookups += 1;
        if (lookups === 1) throw new Error('database is locked');
        return store.findInputByKey(key);
      },
    });
    mkdirSync(fixture.processing, { recursive: true });
    const file = path.join(fixture.processing, 'flaky.fasta');
    writeFileSync(file, FIRST);
    const fileKey = `flaky.fasta:${statSync(file).size}:${statSync(file).mtimeMs}`;

    await fixture.newWatcher({ maxAttempts: 3, retryDelayMs: 30, store: flakyStore }).start();
    await waitFor(() => store.findInputByKey(inputKeyOf(FIRST)), 'the input of the retried file');
    await sleep(100);

    expect(lookups).toBeGreaterThanOrEqual(2);
    // A count that restarts at 1 shows that the failure of the first attempt was forgotten.
    expect(store.recordIngestFailure(fileKey, 'probe')).toBe(1);
  });

  test('one failed ingest is retried, not quarantined', async () => {
    mkdirSync(path.join(fixture.processing, 'late.fasta'), { recursive: true });
    await fixture.newWatcher({ maxAttempts: 3, retryDelayMs: 300 }).start();

    // Replace the unreadable entry with a readable file before the retry runs.
    const entry = path.join(fixture.processing, 'late.fasta');
    renameSync(entry, path.join(fixture.root, 'late-directory'));
    writeFileSync(entry, FIRST);

    await waitFor(() => fixture.store.findInputByKey(inputKeyOf(FIRST)), 'the input of the retried file');
    expect(listFolder(fixture.folders.failed)).toEqual([]);
    expect(listFolder(fixture.processing)).toEqual(['late.fasta']);
  });
});
