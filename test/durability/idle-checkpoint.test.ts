import { createLogger } from '../../src/log';
import { IdleCheckpoint } from '../../src/daemon/idle-checkpoint';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { databaseFile, Store } from '../../src/store';
import { recordingLogger } from './helpers';

describe('IdleCheckpoint', () => {
  test('checkpoints at most once per interval', () => {
    let time = 0;
    let checkpoints = 0;
    const idle = new IdleCheckpoint({
      checkpoint: () => {
        checkpoints += 1;
      },
      minIntervalMs: 60_000,
      logger: createLogger('silent'),
      now: () => time,
    });

    expect(idle.onIdle()).toBe(true);
    time = 59_999;
    expect(idle.onIdle()).toBe(false);
    time = 60_000;
    expect(idle.onIdle()).toBe(true);
    expect(checkpoints).toBe(2);
  });

  test('failed checkpoint is logged, not thrown', () => {
    const { logger, lines } = recordingLogger('warn');
    const idle = new IdleCheckpoint({
      checkpoint: () => {
        throw new Error('database is locked');
      },
      minIntervalMs: 1000,
      logger,
      now: () => 0,
    });

    expect(() => idle.onIdle()).not.toThrow();
    expect(lines).toHaveLength(1);
    expect(lines[0].msg).toBe('idle WAL checkpoint failed');
    expect(lines[0].component).toBe('idle-checkpoint');
  });

  test('real store checkpoint copies the WAL', () => {
    const folder = mkdtempSync(path.join(os.tmpdir(), 'bitnet-edge-checkpoint-'));
    const { logger, lines } = recordingLogger('debug');
    const store = new Store({ file: databaseFile(path.join(folder, 'data')), logger });
    store.open();
    try {
      store.insertTelemetry(new Date('2026-01-01T00:00:00Z'), '{"n":1}');
      const idle = new IdleCheckpoint({ checkpoint: () => store.checkpoint(), minIntervalMs: 1000, logger, now: () => 0 });
      expect(idle.onIdle()).toBe(true);

      const outcome = lines.find((line) => line.msg === 'WAL checkpoint');
      expect(outcome).toBeDefined();
      expect(outcome?.busy).toBe(0);
      expect(outcome?.checkpointed).toBe(outcome?.log);
    } finally {
      store.close();
      rmSync(folder, { recursive: true, force: true });
    }
  });
});
