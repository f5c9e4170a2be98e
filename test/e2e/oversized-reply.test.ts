import Database from 'better-sqlite3';
import type { ErrorMessage, PredictionMessage, ResponseMessage } from '../../src/contracts/topics';
import { DaemonHarness } from '../support/daemon-harness';
import { UBIQUITIN_HUMAN } from '../support/proteins';

/**
 * Small enough that ubiquitin's prediction with per-residue output (about 20 KB) is over it and
 * the same prediction without it (about 4 KB) is under it.
 */
const MAX_PUBLISH_BYTES = 10_000;

describe('a prediction larger than mqtt.maxPublishBytes', () => {
  let harness: DaemonHarness;

  beforeAll(async () => {
    harness = await new DaemonHarness().start({ BITNET_EDGE_MQTT_MAX_PUBLISH_BYTES: String(MAX_PUBLISH_BYTES) });
  });

  afterAll(async () => {
    await harness.stop();
    harness.remove();
  });

  async function request(id: string, options?: Record<string, unknown>): Promise<ResponseMessage> {
    const { topics } = harness.endpoints;
    await harness.probe.publish(topics.request, JSON.stringify({ id, sequence: UBIQUITIN_HUMAN, ...(options ? { options } : {}) }));
    await harness.probe.waitFor(() => harness.probe.json<ResponseMessage>(topics.response).some((m) => m.id === id), 60_000, `reply to ${id}`);
    return harness.probe.json<ResponseMessage>(topics.response).find((m) => m.id === id)!;
  }

  test('is answered with REPLY_TOO_LARGE errors and stays stored', async () => {
    const { topics } = harness.endpoints;
    const reply = await request('with-residues', { residues: true });

    expect(reply.status).toBe('error');
    expect(reply.results).toEqual([]);
    expect(reply.errors).toHaveLength(1);
    expect(reply.errors[0]).toMatchObject({ recordIndex: 0, code: 'REPLY_TOO_LARGE' });
    expect(reply.errors[0].message).toContain(`mqtt.maxPublishBytes (${MAX_PUBLISH_BYTES})`);

    await harness.probe.waitFor(
      () => harness.probe.json<ErrorMessage>(topics.errors).some((m) => m.requestId === 'with-residues'),
      30_000,
      'the error in place of the prediction',
    );
    const error = harness.probe.json<ErrorMessage>(topics.errors).find((m) => m.requestId === 'with-residues')!;
    expect(error.errors[0]).toMatchObject({ recordId: reply.errors[0].recordId, recordIndex: 0, code: 'REPLY_TOO_LARGE' });
    expect(harness.probe.json<PredictionMessage>(topics.predictions).some((m) => m.requestId === 'with-residues')).toBe(false);

    // The result itself, per-residue output included, was committed before anything was published.
    const db = new Database(harness.endpoints.databaseFile, { readonly: true });
    try {
      const stored = db.prepare('SELECT prediction FROM results').pluck().all() as string[];
      expect(stored).toHaveLength(1);
      expect(Buffer.byteLength(stored[0])).toBeGreaterThan(MAX_PUBLISH_BYTES);
    } finally {
      db.close();
    }
  });

  test('a smaller prediction on the same daemon still goes out whole', async () => {
    const reply = await request('without-residues');

    expect(reply.status).toBe('ok');
    expect(reply.results).toHaveLength(1);
    expect(reply.results[0].prediction.residues).toBeUndefined();
  });
});
