import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config/load';
import { createLogger } from '../../src/log';
import { databaseFile, Store } from '../../src/store';
import { numberedMessages, recordingLogger } from './helpers';

const TOPIC = 'bitnet-edge/test-device/predictions';

/** Returns a clock that advances one second per call, so rate-limit intervals are under test control. */
function steppingClock(stepMs = 1000): () => Date {
  let next = Date.parse('2026-01-01T00:00:00.000Z');
  return () => {
    const now = new Date(next);
    next += stepMs;
    return now;
  };
}

function storeInput(store: Store, key: string, first: number, count: number): void {
  store.enqueueInput({ source: 'cli', inputKey: key, requestId: null, origin: 'test', reply: null }, [], [], numberedMessages(TOPIC, first, count));
}

describe('bounded outbox', () => {
  let folder: string;
  let file: string;

  beforeEach(() => {
    folder = mkdtempSync(path.join(os.tmpdir(), 'bitnet-edge-durability-'));
    file = databaseFile(path.join(folder, 'data'));
  });

  afterEach(() => {
    rmSync(folder, { recursive: true, force: true });
  });

  test('config defaults of the outbox bound and rate', () => {
    const config = loadConfig({ env: {}, cwd: folder });
    expect(config.mqtt.outboxMaxMessages).toBe(100_000);
    expect(config.mqtt.outboxMaxPerSecond).toBe(200);

    const overridden = loadConfig({ env: { BITNET_EDGE_MQTT_OUTBOX_MAX_MESSAGES: '10', BITNET_EDGE_MQTT_OUTBOX_MAX_PER_SECOND: '5' }, cwd: folder });
    expect(overridden.mqtt.outboxMaxMessages).toBe(10);
    expect(overridden.mqtt.outboxMaxPerSecond).toBe(5);
  });

  test('commit past the bound drops oldest rows', () => {
    const store = new Store({ file, logger: createLogger('silent'), outboxMaxMessages: 5 });
    store.open();
    try {
      storeInput(store, 'first', 1, 4);
      expect(store.countOutbox()).toBe(4);
      expect(store.outboxDroppedTotal()).toBe(0);

      storeInput(store, 'second', 5, 4);
      expect(store.countOutbox()).toBe(5);
      expect(store.outboxDroppedTotal()).toBe(3);
      expect(store.peekOutbox(10).map((row) => JSON.parse(row.payload) as { n: number })).toEqual([4, 5, 6, 7, 8].map((n) => ({ n })));
    } finally {
      store.close();
    }
  });

  test('job completion and failure respect the bound', () => {
    const store = new Store({ file, logger: createLogger('silent'), outboxMaxMessages: 2 });
    store.open();
    try {
      const sequence = { residues: 'MKVLAAGGHHW', sequenceHash: 'hash-1', changes: [] };
      const job = { recordId: 'p1', recordIndex: 0, description: '', sequence };
      store.enqueueInput({ source: 'cli', inputKey: 'jobs', requestId: null, origin: 'test', reply: null }, [job, { ...job, recordId: 'p2', recordIndex: 1 }], [], numberedMessages(TOPIC, 1, 2));
      const [first, second] = store.claimPendingJobs(2);
      store.failJob(first.id, 'INFERENCE_FAILED', 'test failure', numberedMessages(TOPIC, 3, 1));
      store.failJob(second.id, 'INFERENCE_FAILED', 'test failure', numberedMessages(TOPIC, 4, 2));

      expect(store.countOutbox()).toBe(2);
      expect(store.outboxDroppedTotal()).toBe(3);
      expect(store.peekOutbox(10).map((row) => row.payload)).toEqual(['{"n":4}', '{"n":5}']);
    } finally {
      store.close();
    }
  });

  test('drop counter survives reopen', () => {
    const first = new Store({ file, logger: createLogger('silent'), outboxMaxMessages: 3 });
    first.open();
    storeInput(first, 'a', 1, 5);
    expect(first.outboxDroppedTotal()).toBe(2);
    first.close();

    const second = new Store({ file, logger: createLogger('silent'), outboxMaxMessages: 3 });
    second.open();
    try {
      expect(second.outboxDroppedTotal()).toBe(2);
      storeInput(second, 'b', 6, 2);
      expect(second.outboxDroppedTotal()).toBe(4);
      expect(second.trimOutbox(1)).toBe(2);
      expect(second.outboxDroppedTotal()).toBe(6);
    } finally {
      second.close();
    }
  });

  test('gap in outbox ids drops nothing', () => {
    const store = new Store({ file, logger: createLogger('silent'), outboxMaxMessages: 3 });
    store.open();
    try {
      storeInput(store, 'first', 1, 3);
      const [, middle] = store.peekOutbox(3);
      store.deleteOutbox(middle.id);
      storeInput(store, 'second', 4, 1);

      // Ids span 4 values but only 3 rows exist, which is within the bound.
      expect(store.countOutbox()).toBe(3);
      expect(store.outboxDroppedTotal()).toBe(0);
    } finally {
      store.close();
    }
  });

  test('unbounded store drops nothing', () => {
    const store = new Store({ file, logger: createLogger('silent') });
    store.open();
    try {
      storeInput(store, 'many', 1, 50);
      expect(store.countOutbox()).toBe(50);
      expect(store.outboxDroppedTotal()).toBe(0);
    } finally {
      store.close();
    }
  });

  test('drop warnings are rate limited and summed', () => {
    const { logger, lines } = recordingLogger('warn');
    // Each clock call advances 1 s: a 10 s interval spans several commits.
    const store = new Store({ file, logger, clock: steppingClock(), outboxMaxMessages: 1, dropWarningIntervalMs: 10_000 });
    store.open();
    for (let index = 0; index < 6; index += 1) storeInput(store, `input-${index}`, index * 2 + 1, 2);
    const warningsBeforeClose = lines.filter((line) => line.msg === 'outbox full, so the oldest messages were dropped unsent');
    store.close();
    const warnings = lines.filter((line) => line.msg === 'outbox full, so the oldest messages were dropped unsent');

    // 12 messages into a bound of 1: 11 dropped, the first commit warns at once, the rest are
    // summed, and close reports what is left.
    expect(warningsBeforeClose.length).toBeGreaterThanOrEqual(1);
    expect(warningsBeforeClose.length).toBeLessThan(6);
    expect(warnings[0].dropped).toBe(1);
    expect(warnings.reduce((sum, line) => sum + Number(line.dropped), 0)).toBe(11);
    expect(warnings[warnings.length - 1].droppedTotal).toBe(11);
    expect(warnings[0].component).toBe('store');
  });
});
