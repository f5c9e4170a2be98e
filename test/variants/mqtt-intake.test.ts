import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ErrorMessage } from '../../src/contracts/topics';
import { buildTopics, PAYLOAD_SCHEMA_VERSION } from '../../src/contracts/topics';
import { createLogger } from '../../src/log';
import type { IncomingRequest } from '../../src/mqtt/connection';
import { databaseFile, Store } from '../../src/store';
import { VariantRequestIntake } from '../../src/variants/mqtt-intake';
import type { ParsedVariantRequest, VariantRequest } from '../../src/variants/request';
import type { VariantResponse } from '../../src/variants/service';
import { waitUntil } from '../support/mqtt-probe';

const topics = buildTopics('bitnet-edge', 'pi');
const logger = createLogger('silent');
const SEQUENCE = 'MQIFVKTLTGKTITLEVEPSDTIENVKAKIQDKEGIPPDQQRLIFAGKQLEDGRTLSDYNIQKESTLHLVLRLRGG';
const MAX_ATTEMPTS = 2;
const RETENTION_MS = 3_600_000;

/** A variant service whose scans finish only when the test calls `finishNext`. */
class ControlledService {
  readonly limits = { maxPayloadBytes: 100_000, minLength: 5, maxVariants: 2000 };
  readonly scored: VariantRequest[] = [];
  private readonly waiting: Array<() => void> = [];

  respond(parsed: ParsedVariantRequest): Promise<VariantResponse> {
    if (!parsed.ok) {
      return Promise.resolve({ schemaVersion: PAYLOAD_SCHEMA_VERSION, id: parsed.id, status: 'error', errors: parsed.errors, latencyMs: 0 });
    }
    const { request } = parsed;
    this.scored.push(request);
    return new Promise((resolve) => {
      this.waiting.push(() =>
        resolve({ schemaVersion: PAYLOAD_SCHEMA_VERSION, id: request.id, status: 'ok', variants: [], errors: [], latencyMs: this.scored.length }),
      );
    });
  }

  get scanning(): number {
    return this.waiting.length;
  }

  finishNext(): void {
    const finish = this.waiting.shift();
    if (finish === undefined) throw new Error('no scan is running');
    finish();
  }
}

describe('VariantRequestIntake', () => {
  let folder: string;
  let store: Store;
  let service: ControlledService;
  let intake: VariantRequestIntake;
  let maxPublishBytes: number;

  function newIntake(scoring: ControlledService, clock?: () => Date): VariantRequestIntake {
    return new VariantRequestIntake({
      service: scoring,
      store,
      topics,
      redeliveryWindowMs: 60_000,
      maxAttempts: MAX_ATTEMPTS,
      retentionMs: RETENTION_MS,
      maxPublishBytes,
      logger,
      onCommitted: () => undefined,
      ...(clock ? { clock } : {}),
    });
  }

  function request(body: Record<string, unknown>, extra: Partial<IncomingRequest> = {}): IncomingRequest {
    return { topic: topics.variantsRequest, payload: Buffer.from(JSON.stringify(body)), messageId: 1, ...extra };
  }

  function outboxOn(topic: string): string[] {
    return store.peekOutbox(100).filter((message) => message.topic === topic).map((message) => message.payload);
  }

  beforeEach(() => {
    folder = mkdtempSync(path.join(os.tmpdir(), 'bitnet-edge-variant-intake-'));
    store = new Store({ file: databaseFile(path.join(folder, 'data')), logger });
    store.open();
    service = new ControlledService();
    maxPublishBytes = 1_000_000;
    intake = newIntake(service);
  });

  afterEach(() => {
    intake.stop();
    store.close();
    rmSync(folder, { recursive: true, force: true });
  });

  test('request stored before handle resolves', async () => {
    const incoming = request({ id: 'r1', sequence: SEQUENCE, variants: ['K6A'] }, { correlationData: Buffer.from('c1') });
    await intake.handle(incoming);

    const [row] = store.listPendingVariantRequests();
    expect(row.requestId).toBe('r1');
    expect(row.payload).toEqual(incoming.payload);
    expect(row.packetId).toBe(1);
    expect(row.replyTopic).toBe(topics.variantsResponse);
    expect(row.correlationData).toBe(Buffer.from('c1').toString('base64'));
    await waitUntil(() => service.scanning === 1, 5000, 'the scan');
    expect(store.listPendingVariantRequests()[0].attempts).toBe(1);
  });

  test('answer prunes requests past retention', async () => {
    let now = new Date('2026-03-01T10:00:00.000Z');
    intake.stop();
    store.close();
    store = new Store({ file: databaseFile(path.join(folder, 'data')), logger, clock: () => now });
    store.open();
    intake = newIntake(service, () => now);
    await intake.handle(request({ id: 'old', sequence: SEQUENCE, variants: ['K6A'] }, { messageId: 1 }));
    await waitUntil(() => service.scanning === 1, 5000, 'the first scan');
    service.finishNext();
    await waitUntil(() => store.listPendingVariantRequests().length === 0, 5000, 'the first answer');
    expect(store.getVariantRequest(1)?.requestId).toBe('old');

    now = new Date(now.getTime() + RETENTION_MS + 1000);
    await intake.handle(request({ id: 'new', sequence: SEQUENCE, variants: ['K6A'] }, { messageId: 2 }));
    await waitUntil(() => service.scanning === 1, 5000, 'the second scan');
    service.finishNext();
    await waitUntil(() => store.listPendingVariantRequests().length === 0, 5000, 'the second answer');

    expect(store.getVariantRequest(1)).toBeNull();
    expect(store.getVariantRequest(2)?.requestId).toBe('new');
  });

  test('oversized reply stored, error published', async () => {
    intake.stop();
    maxPublishBytes = 60;
    intake = newIntake(service);
    const body = { id: 'big', sequence: SEQUENCE, variants: ['K6A'] };
    await intake.handle(request(body, { messageId: 1 }));
    await waitUntil(() => service.scanning === 1, 5000, 'the scan');
    service.finishNext();
    await waitUntil(() => outboxOn(topics.variantsResponse).length === 1, 5000, 'the reply');

    const stored = store.getVariantRequest(1)!;
    expect((JSON.parse(stored.reply!) as VariantResponse).status).toBe('ok');
    const published = JSON.parse(outboxOn(topics.variantsResponse)[0]) as VariantResponse;
    expect(published.id).toBe('big');
    expect(published.status).toBe('error');
    expect(published.errors[0].code).toBe('REPLY_TOO_LARGE');
    expect(published.errors[0].message).toContain(`${Buffer.byteLength(stored.reply!)} bytes`);
    expect(published.latencyMs).toBeGreaterThan(0);
    expect(published.latencyMs).toBe((JSON.parse(stored.reply!) as VariantResponse).latencyMs);

    await intake.handle(request(body, { messageId: 2 }));
    const repeated = JSON.parse(outboxOn(topics.variantsResponse)[1]) as VariantResponse;
    expect(repeated.errors[0].code).toBe('REPLY_TOO_LARGE');
  });

  test('store error rejects handle', async () => {
    store.close();

    await expect(intake.handle(request({ id: 'r1', sequence: SEQUENCE, variants: ['K6A'] }))).rejects.toThrow(/not open/);
    expect(service.scored).toEqual([]);
    store.open();
  });

  test('scored request answered through outbox', async () => {
    await intake.handle(request({ id: 'r1', sequence: SEQUENCE, variants: ['K6A'] }, { correlationData: Buffer.from('c1') }));
    await waitUntil(() => service.scanning === 1, 5000, 'the scan');
    service.finishNext();
    await waitUntil(() => store.listPendingVariantRequests().length === 0, 5000, 'the answer');

    const replies = store.peekOutbox(10).filter((message) => message.topic === topics.variantsResponse);
    expect(replies).toHaveLength(1);
    expect((JSON.parse(replies[0].payload) as VariantResponse).id).toBe('r1');
    expect(replies[0].correlationData).toBe(Buffer.from('c1').toString('base64'));
    expect(outboxOn(topics.errors)).toEqual([]);
  });

  test('repeat of answered request gets stored reply', async () => {
    const body = { id: 'r1', sequence: SEQUENCE, variants: ['K6A'] };
    await intake.handle(request(body, { messageId: 1 }));
    await waitUntil(() => service.scanning === 1, 5000, 'the scan');
    service.finishNext();
    await waitUntil(() => outboxOn(topics.variantsResponse).length === 1, 5000, 'the reply');

    await intake.handle(request(body, { messageId: 2 }));

    const replies = outboxOn(topics.variantsResponse);
    expect(replies).toHaveLength(2);
    expect(replies[1]).toBe(replies[0]);
    expect(service.scored).toHaveLength(1);
  });

  test('repeat of pending request ignored', async () => {
    const body = { id: 'r1', sequence: SEQUENCE, variants: ['K6A'] };
    await intake.handle(request(body, { messageId: 1 }));
    await intake.handle(request(body, { messageId: 2 }));
    await waitUntil(() => service.scanning === 1, 5000, 'the scan');
    service.finishNext();
    await waitUntil(() => store.listPendingVariantRequests().length === 0, 5000, 'the answer');

    expect(service.scored).toHaveLength(1);
    expect(outboxOn(topics.variantsResponse)).toHaveLength(1);
  });

  test('rejected request answered at once', async () => {
    await intake.handle(request({ id: 'bad', sequence: SEQUENCE, variants: ['A6G'] }));

    expect(store.listPendingVariantRequests()).toEqual([]);
    const [reply] = outboxOn(topics.variantsResponse).map((payload) => JSON.parse(payload) as VariantResponse);
    const [error] = outboxOn(topics.errors).map((payload) => JSON.parse(payload) as ErrorMessage);
    expect(reply.status).toBe('error');
    expect(reply.errors[0].code).toBe('INVALID_VARIANT');
    expect(error.requestId).toBe('bad');
    expect(error.origin).toBe(topics.variantsRequest);
    expect(error.errors).toEqual(reply.errors);
    expect(service.scored).toEqual([]);
  });

  test('stop leaves scored request pending', async () => {
    await intake.handle(request({ id: 'r1', sequence: SEQUENCE, variants: ['K6A'] }));
    await intake.handle(request({ id: 'r2', sequence: SEQUENCE, variants: ['K6A'] }));
    await waitUntil(() => service.scanning === 1, 5000, 'the scan');
    intake.stop();
    service.finishNext();
    await new Promise((resolve) => setTimeout(resolve, 100));

    const pending = store.listPendingVariantRequests();
    expect(pending.map((row) => row.requestId)).toEqual(['r1', 'r2']);
    expect(pending.map((row) => row.attempts)).toEqual([0, 0]);
    expect(store.countOutbox()).toBe(0);
    expect(service.scored).toHaveLength(1);
  });

  test('resume scores pending requests in order', async () => {
    await intake.handle(request({ id: 'r1', sequence: SEQUENCE, variants: ['K6A'] }));
    await intake.handle(request({ id: 'r2', sequence: SEQUENCE, variants: ['T7A'] }));
    intake.stop();

    const next = new ControlledService();
    intake = newIntake(next);
    expect(intake.resume()).toBe(2);
    await waitUntil(() => next.scanning === 1, 5000, 'the first scan');
    next.finishNext();
    await waitUntil(() => next.scanning === 1 && next.scored.length === 2, 5000, 'the second scan');
    next.finishNext();
    await waitUntil(() => store.listPendingVariantRequests().length === 0, 5000, 'both answers');

    expect(next.scored.map((scored) => scored.id)).toEqual(['r1', 'r2']);
    const replies = outboxOn(topics.variantsResponse).map((payload) => (JSON.parse(payload) as VariantResponse).id);
    expect(replies).toEqual(['r1', 'r2']);
  });

  test('request that crashes every attempt answered with error', async () => {
    await intake.handle(request({ id: 'r1', sequence: SEQUENCE, variants: ['K6A'] }));
    await waitUntil(() => service.scanning === 1, 5000, 'the first attempt');

    // Each intake is dropped without stop(), as a process killed while scoring.
    for (let attempt = 2; attempt <= MAX_ATTEMPTS; attempt++) {
      const next = new ControlledService();
      intake = newIntake(next);
      intake.resume();
      await waitUntil(() => next.scanning === 1, 5000, `attempt ${attempt}`);
    }
    expect(store.listPendingVariantRequests()[0].attempts).toBe(MAX_ATTEMPTS);

    const last = new ControlledService();
    intake = newIntake(last);
    intake.resume();
    await waitUntil(() => store.listPendingVariantRequests().length === 0, 5000, 'the error reply');

    expect(last.scored).toEqual([]);
    const [reply] = outboxOn(topics.variantsResponse).map((payload) => JSON.parse(payload) as VariantResponse);
    expect(reply.status).toBe('error');
    expect(reply.errors[0].code).toBe('QUARANTINED');
    expect(outboxOn(topics.errors)).toHaveLength(1);
  });
});
