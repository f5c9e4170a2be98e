import path from 'node:path';
import Database from 'better-sqlite3';
import type { ErrorMessage } from '../../src/contracts/topics';
import type { VariantResponse } from '../../src/variants/service';
import { DaemonHarness } from '../support/daemon-harness';
import { MqttProbe } from '../support/mqtt-probe';
import { GFP_AEQVI, UBIQUITIN_HUMAN } from '../support/proteins';

/** A two-layer model with prefix-cache inputs (its predictions are meaningless). */
const SMOKE_MODEL_DIR = path.join(__dirname, '..', 'fixtures', 'model-smoke');
const MAX_PAYLOAD_BYTES = 4096;

interface TelemetryRecord {
  cache: { prefixHitRatio: number | null; prefixEntries: number; prefixBytes: number };
}

describe('variant requests through the daemon', () => {
  let harness: DaemonHarness;
  let probe: MqttProbe;

  beforeAll(async () => {
    harness = await new DaemonHarness().start({
      BITNET_EDGE_MODEL_DIR: SMOKE_MODEL_DIR,
      BITNET_EDGE_MQTT_MAX_PAYLOAD_BYTES: String(MAX_PAYLOAD_BYTES),
      BITNET_EDGE_HTTP_ENABLED: 'true',
      BITNET_EDGE_HTTP_HOST: '127.0.0.1',
      BITNET_EDGE_HTTP_PORT: '0',
    });
    const { topics } = harness.endpoints;
    probe = new MqttProbe(harness.endpoints.brokerUrl);
    await probe.connect([topics.variantsResponse, topics.errors, topics.telemetry]);
  });

  afterAll(async () => {
    await probe?.close();
    await harness?.stop();
    harness?.remove();
  });

  async function request(body: Record<string, unknown>): Promise<VariantResponse> {
    const { topics } = harness.endpoints;
    await probe.publish(topics.variantsRequest, JSON.stringify(body));
    await probe.waitFor(() => probe.json<VariantResponse>(topics.variantsResponse).some((reply) => reply.id === body.id), 60_000, `reply ${String(body.id)}`);
    return probe.json<VariantResponse>(topics.variantsResponse).find((reply) => reply.id === body.id)!;
  }

  test('MQTT reply matches the HTTP reply', async () => {
    const body = { id: 'gfp-1', sequence: GFP_AEQVI, variants: ['S65T', 'Y66H:S65T', 'K3A'] };
    const viaMqtt = await request(body);
    const response = await fetch(`${harness.endpoints.httpUrl}/v1/variants`, { method: 'POST', body: JSON.stringify(body) });
    const viaHttp = (await response.json()) as VariantResponse;

    expect(viaMqtt.status).toBe('ok');
    expect(viaMqtt.modelId).toBe(harness.endpoints.modelId);
    expect(viaMqtt.stats?.prefixCache).toBe(true);
    expect(response.status).toBe(200);
    expect(viaHttp.variants?.map((variant) => variant.llr)).toEqual(viaMqtt.variants?.map((variant) => variant.llr));
    expect(viaHttp.variants?.[1].prediction).toEqual(viaMqtt.variants?.[1].prediction);
  });

  test('invalid variant is answered and reported', async () => {
    const reply = await request({ id: 'bad-1', sequence: UBIQUITIN_HUMAN, variants: ['K48R', 'A48G'] });
    const { topics } = harness.endpoints;
    await probe.waitFor(() => probe.json<ErrorMessage>(topics.errors).some((message) => message.requestId === 'bad-1'));
    const error = probe.json<ErrorMessage>(topics.errors).find((message) => message.requestId === 'bad-1')!;

    expect(reply.status).toBe('error');
    expect(reply.variants).toBeUndefined();
    expect(reply.errors).toEqual([{ recordId: 'A48G', recordIndex: 1, code: 'INVALID_VARIANT', message: 'variant "A48G": residue 48 of the sequence is K, not A' }]);
    expect(error.source).toBe('mqtt');
    expect(error.origin).toBe(topics.variantsRequest);
    expect(error.errors).toEqual(reply.errors);
  });

  test('oversized request is rejected', async () => {
    const { topics } = harness.endpoints;
    await probe.publish(topics.variantsRequest, JSON.stringify({ id: 'big-1', sequence: 'M'.repeat(MAX_PAYLOAD_BYTES), variants: ['M1A'] }));
    await probe.waitFor(() => probe.json<ErrorMessage>(topics.errors).some((message) => message.errors[0]?.code === 'PAYLOAD_TOO_LARGE'));

    const reply = probe.json<VariantResponse>(topics.variantsResponse).find((message) => message.errors[0]?.code === 'PAYLOAD_TOO_LARGE');
    expect(reply?.status).toBe('error');
  });

  test('repeated request gets stored reply', async () => {
    const body = { id: 'repeat-1', sequence: UBIQUITIN_HUMAN, variants: ['K48R', 'I44A'] };
    const { topics } = harness.endpoints;
    const replies = (): string[] =>
      probe.on(topics.variantsResponse).map((message) => message.text).filter((text) => (JSON.parse(text) as VariantResponse).id === body.id);
    await request(body);
    await probe.publish(topics.variantsRequest, JSON.stringify(body));
    await probe.waitFor(() => replies().length === 2, 30_000, 'the second reply');

    expect(replies()[1]).toBe(replies()[0]);
    // One stored request with one scoring attempt: the repeat was not scored.
    const db = new Database(harness.endpoints.databaseFile, { readonly: true });
    const rows = db.prepare('SELECT status, attempts FROM variant_requests WHERE request_id = ?').all(body.id);
    db.close();
    expect(rows).toEqual([{ status: 'answered', attempts: 1 }]);
  });

  test('telemetry reports the prefix cache hit ratio', async () => {
    await request({ id: 'gfp-2', sequence: GFP_AEQVI, variants: ['S65T'] });
    const { topics } = harness.endpoints;
    await probe.waitFor(() => probe.json<TelemetryRecord>(topics.telemetry).some((record) => record.cache.prefixHitRatio !== null), 10_000, 'telemetry');

    const ratios = probe.json<TelemetryRecord>(topics.telemetry).map((record) => record.cache.prefixHitRatio).filter((ratio) => ratio !== null);
    expect(ratios[ratios.length - 1]).toBeGreaterThan(0);
    expect(ratios[ratios.length - 1]).toBeLessThanOrEqual(1);
    // The wild type's blocks stay in the prefix cache after the request.
    const last = probe.json<TelemetryRecord>(topics.telemetry).filter((record) => record.cache.prefixHitRatio !== null).pop()!;
    expect(last.cache.prefixEntries).toBeGreaterThan(0);
    expect(last.cache.prefixBytes).toBeGreaterThan(last.cache.prefixEntries);
  });
});
