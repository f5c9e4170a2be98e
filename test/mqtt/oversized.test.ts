import type { OutboxRow } from '../../src/contracts/store';
import type { ErrorMessage, PredictionMessage, ResponseMessage } from '../../src/contracts/topics';
import { oversizedReplacement } from '../../src/mqtt/oversized';
import { testTopics } from './helpers';

const topics = testTopics();
const NOW = new Date('2026-12-05T07:00:00.000Z');
/** Record index of each job the tests name; any other job does not exist. */
const RECORD_INDEX: Record<number, number> = { 7: 2, 8: 3 };
const recordIndexOf = (jobId: number): number | null => RECORD_INDEX[jobId] ?? null;

function row(topic: string, payload: unknown, extra: Partial<OutboxRow> = {}): OutboxRow {
  return { id: 11, topic, payload: JSON.stringify(payload), qos: 1, retain: false, createdAt: NOW.toISOString(), ...extra };
}

function predictionMessage(jobId: number, recordId: string): PredictionMessage {
  return {
    schemaVersion: 1,
    jobId,
    source: 'mqtt',
    requestId: 'req-1',
    recordId,
    origin: 'bitnet-edge/dev/request/predict',
    sequenceHash: 'ab'.repeat(32),
    length: 3,
    changes: [],
    cached: false,
    latencyMs: 4,
    createdAt: NOW.toISOString(),
    prediction: {} as PredictionMessage['prediction'],
  };
}

/** Returns a prediction message as one result of a reply, without the fields the reply carries once. */
function resultOf(message: PredictionMessage): ResponseMessage['results'][number] {
  const result: Partial<PredictionMessage> = { ...message };
  delete result.schemaVersion;
  delete result.requestId;
  delete result.origin;
  return result as ResponseMessage['results'][number];
}

describe('oversizedReplacement', () => {
  test('prediction becomes errors-topic error', () => {
    const replacement = oversizedReplacement(row(topics.predictions, predictionMessage(7, 'P1')), 20_000_000, 15_000_000, topics, recordIndexOf, () => NOW);

    expect(replacement?.topic).toBe(topics.errors);
    expect(replacement?.retain).toBe(false);
    const error = JSON.parse(replacement!.payload) as ErrorMessage;
    expect(error).toMatchObject({ source: 'mqtt', requestId: 'req-1', origin: 'bitnet-edge/dev/request/predict', createdAt: NOW.toISOString() });
    expect(error.errors).toHaveLength(1);
    expect(error.errors[0]).toMatchObject({ recordId: 'P1', recordIndex: 2, code: 'REPLY_TOO_LARGE' });
    expect(error.errors[0].message).toContain('20000000 bytes');
    expect(error.errors[0].message).toContain('job 7');
  });

  test('reply becomes error reply', () => {
    const reply: ResponseMessage = {
      schemaVersion: 1,
      id: 'req-2',
      status: 'partial',
      results: [7, 8].map((jobId) => resultOf(predictionMessage(jobId, `P${jobId}`))),
      errors: [{ recordId: 'bad', recordIndex: 0, code: 'INVALID_RESIDUES', message: 'record "bad" has a digit' }],
    };
    const replacement = oversizedReplacement(
      row('replies/client-9', reply, { correlationData: 'Y29ycg==', retain: false }),
      30_000_000,
      15_000_000,
      topics,
      recordIndexOf,
    );

    expect(replacement).toMatchObject({ topic: 'replies/client-9', correlationData: 'Y29ycg==', qos: 1 });
    const parsed = JSON.parse(replacement!.payload) as ResponseMessage;
    expect(parsed.id).toBe('req-2');
    expect(parsed.status).toBe('error');
    expect(parsed.results).toEqual([]);
    expect(parsed.errors.map((error) => [error.recordId, error.recordIndex, error.code])).toEqual([
      ['bad', 0, 'INVALID_RESIDUES'],
      ['P7', 2, 'REPLY_TOO_LARGE'],
      ['P8', 3, 'REPLY_TOO_LARGE'],
    ]);
    expect(parsed.errors[1].message).toContain('jobs 7, 8');
  });

  test('other messages have no replacement', () => {
    expect(oversizedReplacement(row(topics.telemetry, { cpu: 1 }), 2000, 1000, topics, recordIndexOf)).toBeNull();
    expect(oversizedReplacement({ ...row(topics.predictions, {}), payload: 'not json' }, 2000, 1000, topics, recordIndexOf)).toBeNull();
  });
});
