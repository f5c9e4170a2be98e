import { buildTopics } from '../../src/contracts/topics';
import { createLogger } from '../../src/log';
import type { JobProcessorOptions, Predictor, ProcessorStore } from '../../src/queue/processor';

/** Topics of the test device that processor tests publish under. */
export const TEST_TOPICS = buildTopics('bitnet-edge', 'test-device');

/**
 * Returns JobProcessor options for tests: silent logs, no-op metrics and callbacks, batches of
 * 4, 3 attempts and a 20 ms idle poll. `overrides` replaces any of them.
 */
export function testProcessorOptions(store: ProcessorStore, predictor: Predictor, overrides: Partial<JobProcessorOptions> = {}): JobProcessorOptions {
  return {
    store,
    predictor,
    topics: TEST_TOPICS,
    metrics: { recordDone: () => undefined, recordFailed: () => undefined },
    logger: createLogger('silent'),
    batchSize: 4,
    maxAttempts: 3,
    onCommitted: () => undefined,
    onInboxInputComplete: () => undefined,
    idlePollMs: 20,
    ...overrides,
  };
}
