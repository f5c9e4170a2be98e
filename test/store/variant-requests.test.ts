import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import type { NewVariantRequest } from '../../src/contracts/store';
import { createLogger } from '../../src/log';
import { databaseFile, MIGRATIONS, Store, type VariantAnswer } from '../../src/store';
import { openDatabase } from '../../src/store/db';
import { mqttInput, newJob, publication } from './fixtures';

const logger = createLogger('silent');
const WINDOW_MS = 60_000;
const REPLY_TOPIC = 'bitnet-edge/pi/response/variants';
const ERRORS_TOPIC = 'bitnet-edge/pi/errors';

function variantRequest(requestKey: string, overrides: Partial<NewVariantRequest> = {}): NewVariantRequest {
  return {
    requestKey,
    requestId: `id-${requestKey}`,
    origin: 'bitnet-edge/pi/request/variants',
    payload: Buffer.from(`{"id":"id-${requestKey}","sequence":"MKTAYIAKQR","variants":["K2A"]}`),
    payloadHash: `hash-${requestKey}`,
    packetId: null,
    replyTopic: REPLY_TOPIC,
    correlationData: null,
    ...overrides,
  };
}

function answerWith(reply: object, extra: string[] = []): VariantAnswer {
  const payload = JSON.stringify(reply);
  return { reply: payload, publications: [publication(REPLY_TOPIC, payload), ...extra.map((text) => publication(ERRORS_TOPIC, text))] };
}

describe('Store variant requests', () => {
  let folder: string;
  let file: string;
  let now: Date;
  let store: Store;
  const opened: Store[] = [];

  function openStore(): Store {
    const opening = new Store({ file, logger, clock: () => now });
    opening.open();
    opened.push(opening);
    return opening;
  }

  function since(): Date {
    return new Date(now.getTime() - WINDOW_MS);
  }

  function advance(ms: number): void {
    now = new Date(now.getTime() + ms);
  }

  beforeEach(() => {
    folder = mkdtempSync(path.join(os.tmpdir(), 'bitnet-edge-variant-store-'));
    file = databaseFile(path.join(folder, 'data'));
    now = new Date('2026-03-01T10:00:00.000Z');
    store = openStore();
  });

  afterEach(() => {
    for (const each of opened.splice(0)) each.close();
    rmSync(folder, { recursive: true, force: true });
  });

  test('new request stored pending with its payload', () => {
    const payload = gzipSync(Buffer.from('{"sequence":"MKTAYIAKQR","variants":"all"}'));
    const result = store.storeVariantRequest(variantRequest('a', { payload, packetId: 12, correlationData: 'Y29ycg==' }));

    expect(result.inserted).toBe(true);
    expect(result.request).toEqual({
      id: result.request.id,
      requestKey: 'a',
      requestId: 'id-a',
      origin: 'bitnet-edge/pi/request/variants',
      payload,
      payloadHash: 'hash-a',
      packetId: 12,
      replyTopic: REPLY_TOPIC,
      correlationData: 'Y29ycg==',
      status: 'pending',
      attempts: 0,
      reply: null,
      createdAt: now.toISOString(),
      finishedAt: null,
    });
    expect(store.countOutbox()).toBe(0);
  });

  test('same key repeats stored request', () => {
    const first = store.storeVariantRequest(variantRequest('id:r1:h1'));
    advance(10 * WINDOW_MS);
    const second = store.storeVariantRequest(variantRequest('id:r1:h1', { requestId: 'other' }));
    const otherHash = store.storeVariantRequest(variantRequest('id:r1:h2'));

    expect(second.inserted).toBe(false);
    expect(second.request.id).toBe(first.request.id);
    expect(second.request.requestId).toBe('id-id:r1:h1');
    expect(otherHash.inserted).toBe(true);
    expect(store.listPendingVariantRequests().map((row) => row.requestKey)).toEqual(['id:r1:h1', 'id:r1:h2']);
  });

  test('packet id and hash within window repeat', () => {
    const first = store.storeVariantRequest(variantRequest('anon-1', { requestId: null, packetId: 7, payloadHash: 'same' }), since());
    advance(WINDOW_MS - 1000);
    const redelivery = store.storeVariantRequest(variantRequest('anon-2', { requestId: null, packetId: 7, payloadHash: 'same' }), since());

    expect(redelivery.inserted).toBe(false);
    expect(redelivery.request.id).toBe(first.request.id);
    expect(store.listPendingVariantRequests()).toHaveLength(1);
  });

  test('packet id match after window is new', () => {
    store.storeVariantRequest(variantRequest('anon-1', { requestId: null, packetId: 7, payloadHash: 'same' }), since());
    advance(WINDOW_MS + 1000);
    const late = store.storeVariantRequest(variantRequest('anon-2', { requestId: null, packetId: 7, payloadHash: 'same' }), since());

    expect(late.inserted).toBe(true);
    expect(store.listPendingVariantRequests()).toHaveLength(2);
  });

  test('packet id with another hash is new', () => {
    store.storeVariantRequest(variantRequest('anon-1', { requestId: null, packetId: 7, payloadHash: 'one' }), since());
    const other = store.storeVariantRequest(variantRequest('anon-2', { requestId: null, packetId: 7, payloadHash: 'two' }), since());

    expect(other.inserted).toBe(true);
  });

  test('packet id without redelivery window is not matched', () => {
    store.storeVariantRequest(variantRequest('id-1', { packetId: 7, payloadHash: 'same' }), null);
    const next = store.storeVariantRequest(variantRequest('id-2', { packetId: 7, payloadHash: 'same' }), null);

    expect(next.inserted).toBe(true);
  });

  test('cleared packet ids no longer match', () => {
    const first = store.storeVariantRequest(variantRequest('anon-1', { requestId: null, packetId: 7, payloadHash: 'same' }), since());
    store.enqueueInput(mqttInput('prediction'), [newJob(0, 'MKTAYIAKQR')], [], [], { packetId: 8, payloadHash: 'p', redeliverySince: null });

    expect(store.clearMqttDeliveries()).toBe(2);
    expect(store.getVariantRequest(first.request.id)?.packetId).toBeNull();
    const after = store.storeVariantRequest(variantRequest('anon-2', { requestId: null, packetId: 7, payloadHash: 'same' }), since());
    expect(after.inserted).toBe(true);
  });

  test('later delivery under packet id forgets it', () => {
    const variant = store.storeVariantRequest(variantRequest('anon-1', { requestId: null, packetId: 7, payloadHash: 'same' }), since());
    store.enqueueInput(mqttInput('prediction'), [newJob(0, 'MKTAYIAKQR')], [], [], { packetId: 7, payloadHash: 'p', redeliverySince: null });

    expect(store.getVariantRequest(variant.request.id)?.packetId).toBeNull();
    const again = store.storeVariantRequest(variantRequest('anon-2', { requestId: null, packetId: 7, payloadHash: 'same' }), since());
    expect(again.inserted).toBe(true);

    // The variant request now has packet id 7, so the prediction request is no longer found under it.
    const prediction = store.enqueueInput(mqttInput('prediction-2'), [newJob(0, 'MKTAYIAKQR')], [], [], { packetId: 7, payloadHash: 'p', redeliverySince: since() });
    expect(prediction.inserted).toBe(true);
  });

  test('attempts counted durably and released', () => {
    const { request } = store.storeVariantRequest(variantRequest('a'));

    expect(store.startVariantAttempt(request.id)).toBe(1);
    expect(store.startVariantAttempt(request.id)).toBe(2);
    store.releaseVariantAttempt(request.id);
    expect(store.getVariantRequest(request.id)?.attempts).toBe(1);

    store.close();
    const reopened = openStore();
    expect(reopened.listPendingVariantRequests().map((row) => row.attempts)).toEqual([1]);
    expect(reopened.startVariantAttempt(request.id)).toBe(2);
  });

  test('attempt of answered request throws', () => {
    const { request } = store.storeVariantRequest(variantRequest('a'));
    store.answerVariantRequest(request.id, answerWith({ id: 'id-a', status: 'ok' }));

    expect(() => store.startVariantAttempt(request.id)).toThrow(/already answered/);
    expect(() => store.startVariantAttempt(request.id + 100)).toThrow(/not found/);
  });

  test('answer writes reply and outbox together', () => {
    const { request } = store.storeVariantRequest(variantRequest('a', { correlationData: 'Y29ycg==' }));
    advance(5000);
    const answer = answerWith({ id: 'id-a', status: 'error' }, ['{"errors":1}']);
    answer.publications[0].correlationData = 'Y29ycg==';

    expect(store.answerVariantRequest(request.id, answer)).toBe(true);
    const row = store.getVariantRequest(request.id);
    expect(row?.status).toBe('answered');
    expect(row?.reply).toBe(answer.reply);
    expect(row?.finishedAt).toBe(now.toISOString());
    const outbox = store.peekOutbox(10);
    expect(outbox.map((message) => [message.topic, message.payload, message.correlationData])).toEqual([
      [REPLY_TOPIC, answer.reply, 'Y29ycg=='],
      [ERRORS_TOPIC, '{"errors":1}', null],
    ]);
    expect(store.listPendingVariantRequests()).toEqual([]);
  });

  test('second answer adds nothing', () => {
    const { request } = store.storeVariantRequest(variantRequest('a'));
    store.answerVariantRequest(request.id, answerWith({ status: 'ok' }));

    expect(store.answerVariantRequest(request.id, answerWith({ status: 'other' }))).toBe(false);
    expect(store.getVariantRequest(request.id)?.reply).toBe('{"status":"ok"}');
    expect(store.countOutbox()).toBe(1);
  });

  test('failed answer stores neither reply nor messages', () => {
    const { request } = store.storeVariantRequest(variantRequest('a'));
    const broken: VariantAnswer = { reply: 'not json', publications: [publication(REPLY_TOPIC, 'not json')] };

    expect(() => store.answerVariantRequest(request.id, broken)).toThrow(/CHECK constraint failed/);
    expect(store.getVariantRequest(request.id)?.status).toBe('pending');
    expect(store.countOutbox()).toBe(0);
    expect(() => store.answerVariantRequest(request.id + 100, answerWith({}))).toThrow(/not found/);
  });

  test('rejected request stored answered once', () => {
    const answer = answerWith({ id: 'id-bad', status: 'error' }, ['{"errors":1}']);
    const first = store.storeAnsweredVariantRequest(variantRequest('bad'), null, answer);
    const repeat = store.storeAnsweredVariantRequest(variantRequest('bad'), null, answer);

    expect(first.inserted).toBe(true);
    expect(first.request.status).toBe('answered');
    expect(first.request.payload).toBeNull();
    expect(first.request.reply).toBe(answer.reply);
    expect(first.request.finishedAt).toBe(now.toISOString());
    expect(repeat.inserted).toBe(false);
    expect(repeat.request.id).toBe(first.request.id);
    expect(store.countOutbox()).toBe(2);
    expect(store.listPendingVariantRequests()).toEqual([]);
  });

  test('prune deletes old answered requests only', () => {
    const old = store.storeVariantRequest(variantRequest('old')).request;
    const stillPending = store.storeVariantRequest(variantRequest('pending')).request;
    store.answerVariantRequest(old.id, answerWith({ status: 'ok' }));
    advance(2 * WINDOW_MS);
    const recent = store.storeVariantRequest(variantRequest('recent')).request;
    store.answerVariantRequest(recent.id, answerWith({ status: 'ok' }));

    expect(store.pruneVariantRequests(new Date(now.getTime() - WINDOW_MS))).toBe(1);
    expect(store.getVariantRequest(old.id)).toBeNull();
    expect(store.getVariantRequest(recent.id)?.status).toBe('answered');
    expect(store.getVariantRequest(stillPending.id)?.status).toBe('pending');
    expect(store.storeVariantRequest(variantRequest('old')).inserted).toBe(true);
  });

  test('pending requests listed in arrival order', () => {
    const ids = ['c', 'a', 'b'].map((key) => store.storeVariantRequest(variantRequest(key)).request.id);
    store.answerVariantRequest(ids[1], answerWith({ status: 'ok' }));

    expect(store.listPendingVariantRequests().map((row) => row.requestKey)).toEqual(['c', 'b']);
  });

  test('migration 7 upgrades a version 6 file', () => {
    store.close();
    rmSync(folder, { recursive: true, force: true });
    const old = openDatabase(file, logger, () => now, MIGRATIONS.filter((migration) => migration.version <= 6));
    old.db.close();

    const upgraded = openStore();
    const stored = upgraded.storeVariantRequest(variantRequest('a'));
    expect(stored.inserted).toBe(true);
    const db = new Database(file, { readonly: true });
    const versions = db.prepare('SELECT version FROM schema_migrations ORDER BY version').pluck().all();
    db.close();
    expect(versions).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });
});
