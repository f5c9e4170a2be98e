import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Prediction } from '../../src/contracts/prediction';
import type { JobResult } from '../../src/contracts/store';
import { buildTopics, type Topics } from '../../src/contracts/topics';
import { InboxWatcher, type InboxWatcherOptions } from '../../src/intake/inbox';
import { createLogger } from '../../src/log';
import { databaseFile, Store } from '../../src/store';

/** Temporary folders, an open Store and the watchers created on them. */
export interface InboxFixture {
  root: string;
  folders: InboxWatcherOptions['folders'];
  processing: string;
  store: Store;
  topics: Topics;
  queuedCalls: number;
  newWatcher(overrides?: Partial<InboxWatcherOptions>): InboxWatcher;
  cleanup(): Promise<void>;
}

export function createInboxFixture(): InboxFixture {
  const root = mkdtempSync(path.join(os.tmpdir(), 'bitnet-edge-inbox-'));
  const folders = {
    inbox: path.join(root, 'inbox'),
    outbox: path.join(root, 'outbox'),
    done: path.join(root, 'done'),
    failed: path.join(root, 'failed'),
    data: path.join(root, 'data'),
  };
  const logger = createLogger('silent');
  const store = new Store({ file: databaseFile(folders.data), logger });
  store.open();
  const watchers: InboxWatcher[] = [];

  const fixture: InboxFixture = {
    root,
    folders,
    processing: path.join(folders.inbox, '.processing'),
    store,
    topics: buildTopics('bitnet-edge', 'test-device'),
    queuedCalls: 0,
    newWatcher: (overrides = {}) => {
      const watcher = new InboxWatcher({
        folders,
        settleMs: 50,
        rescanMs: 200,
        maxFileBytes: 1_000_000,
        minLength: 5,
        logger,
        store,
        topics: fixture.topics,
        onJobsQueued: () => {
          fixture.queuedCalls += 1;
        },
        ...overrides,
      });
      watchers.push(watcher);
      return watcher;
    },
    cleanup: async () => {
      for (const watcher of watchers) await watcher.stop();
      store.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
  return fixture;
}

/** Polls `probe` until it returns a value other than undefined, null or false. */
export async function waitFor<T>(probe: () => T | undefined | null | false, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== null && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function listFolder(folder: string): string[] {
  return existsSync(folder) ? readdirSync(folder).sort() : [];
}

/** Builds a prediction of the contract's shape. The inbox only copies it into results files. */
export function fakePrediction(): Prediction {
  return {
    modelId: 'test-model',
    localization: { predicted: [{ label: 'cytoplasm', score: 0.8 }], top: [{ label: 'cytoplasm', score: 0.8 }] },
    go: {
      predicted: [{ label: 'GO:0005737', name: 'cytoplasm', aspect: 'C', score: 0.7 }],
      top: [{ label: 'GO:0005737', name: 'cytoplasm', aspect: 'C', score: 0.7 }],
    },
    lm: { logLikelihood: -30, perplexity: 12.5, scoredResidues: 12 },
    residuesUsed: 12,
    truncated: false,
  };
}

export function fakeResult(): JobResult {
  return { prediction: fakePrediction(), modelId: 'test-model', cached: false, latencyMs: 12, queueWaitMs: 3 };
}

/** Marks every pending job done with a fake result and returns how many were completed. */
export function completeAllPendingJobs(store: Store): number {
  const jobs = store.claimPendingJobs(1000);
  for (const job of jobs) store.completeJob(job.id, fakeResult(), []);
  return jobs.length;
}
