import Database from 'better-sqlite3';
import type { ErrorMessage, PredictionMessage, ResponseMessage } from '../../src/contracts/topics';
import { DaemonHarness } from '../support/daemon-harness';
import { UBIQUITIN_HUMAN } from '../support/proteins';

/**
 * Limit below ubiquitin's prediction message with per-residue output (about 19 KB) and above
 * the same message without it (about 2.3 KB).
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

  test('oversized prediction gets REPLY_TOO_LARGE', async () => {
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

  test('smaller prediction sent whole', async () => {
    const reply = await request('without-residues');

    expect(reply.status).toBe('ok');
    expect(reply.results).toHaveLength(1);
    expect(reply.results[0].prediction.residues).toBeUndefined();
  });
});
