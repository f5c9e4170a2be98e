import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { NewInput, NewJob } from '../../src/contracts/jobs';
import type { Prediction } from '../../src/contracts/prediction';
import type { JobResult, OutboxMessage } from '../../src/contracts/store';
import { createLogger } from '../../src/log';
import { databaseFile, Store } from '../../src/store';

/** A temporary data folder with a Store on `bitnet-edge.db` inside it. */
export interface StoreFixture {
  folder: string;
  file: string;
  store: Store;
  /** Creates another Store on the same file, closed, for reopen tests. */
  newStore(): Store;
  cleanup(): void;
}

/** Returns a clock that starts at 2026-01-01T00:00:00Z and advances one second per call. */
export function steppingClock(): () => Date {
  let next = Date.parse('2026-01-01T00:00:00.000Z');
  return () => {
    const now = new Date(next);
    next += 1000;
    return now;
  };
}

export function createStoreFixture(): StoreFixture {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'bitnet-edge-store-'));
  const file = databaseFile(path.join(folder, 'data'));
  const logger = createLogger('silent');
  const clock = steppingClock();
  const stores: Store[] = [];

  const newStore = (): Store => {
    const store = new Store({ file, logger, clock });
    stores.push(store);
    return store;
  };
  const store = newStore();

  return {
    folder,
    file,
    store,
    newStore,
    cleanup: () => {
      for (const opened of stores) opened.close();
      rmSync(folder, { recursive: true, force: true });
    },
  };
}

export function mqttInput(inputKey: string, overrides: Partial<NewInput> = {}): NewInput {
  return {
    source: 'mqtt',
    inputKey,
    requestId: `request-${inputKey}`,
    origin: 'bitnet-edge/pi/request/predict',
    reply: { responseTopic: 'bitnet-edge/pi/response/predict', correlationData: 'Y29ycmVsYXRpb24=' },
    ...overrides,
  };
}

export function newJob(recordIndex: number, residues: string, recordId = `P${recordIndex}`): NewJob {
  return {
    recordId,
    recordIndex,
    description: `protein ${recordIndex}`,
    sequence: { residues, sequenceHash: `hash-${residues}`, changes: ['removed trailing *'] },
  };
}

export function publication(topic: string, payload: string): OutboxMessage {
  return { topic, payload, qos: 1, retain: false };
}

export function samplePrediction(modelId = 'model-a'): Prediction {
  return {
    modelId,
    localization: {
      predicted: [
        { label: 'nucleus', score: 0.91 },
        { label: 'cytoplasm', score: 0.62 },
      ],
      top: [
        { label: 'nucleus', score: 0.91 },
        { label: 'cytoplasm', score: 0.62 },
        { label: 'mitochondrion', score: 0.2 },
      ],
    },
    go: {
      predicted: [{ label: 'GO:0005634', name: 'nucleus', aspect: 'C', score: 0.8 }],
      top: [
        { label: 'GO:0005634', name: 'nucleus', aspect: 'C', score: 0.8 },
        { label: 'GO:0003677', name: 'DNA binding', aspect: 'F', score: 0.4 },
      ],
    },
    function: {
      predicted: [],
      top: [{ label: 'transferase', score: 0.3 }],
    },
    lm: { logLikelihood: -120.5, perplexity: 11.2, scoredResidues: 50 },
    residuesUsed: 50,
    truncated: false,
  };
}

export function jobResult(prediction: Prediction, cached = false): JobResult {
  return { prediction, modelId: prediction.modelId, cached, latencyMs: 42.5, queueWaitMs: 7 };
}
