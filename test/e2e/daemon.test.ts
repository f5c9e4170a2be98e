import { existsSync, readdirSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { ErrorMessage, PredictionMessage, ResponseMessage } from '../../src/contracts/topics';
import { DaemonHarness } from '../support/daemon-harness';
import { waitUntil } from '../support/mqtt-probe';
import { GFP_AEQVI, INSULIN_HUMAN, LYSOZYME_CHICK, THREE_PROTEINS_FASTA, UBIQUITIN_HUMAN } from '../support/proteins';

/** Drops a file into the inbox as the README recommends: write it elsewhere, then rename it. */
function dropIntoInbox(harness: DaemonHarness, name: string, text: string): void {
  const staging = path.join(harness.dir, `.${name}.tmp`);
  writeFileSync(staging, text);
  renameSync(staging, path.join(harness.config.folders.inbox, name));
}

function queryPredictions(harness: DaemonHarness): Array<Record<string, unknown>> {
  const db = new Database(harness.endpoints.databaseFile, { readonly: true });
  try {
    return db.prepare('SELECT * FROM predictions ORDER BY result_id').all() as Array<Record<string, unknown>>;
  } finally {
    db.close();
  }
}

describe('daemon end to end', () => {
  let harness: DaemonHarness;

  beforeAll(async () => {
    harness = await new DaemonHarness().start();
  });

  afterAll(async () => {
    await harness.stop();
    harness.remove();
  });

  test('status is retained online', async () => {
    const { topics } = harness.endpoints;

    await harness.probe.waitFor(() => harness.probe.on(topics.status).some((m) => m.text === 'online' && m.retain), 10_000, 'status online');
  });

  test('inbox file gives rows, messages and a results file', async () => {
    const { topics } = harness.endpoints;
    dropIntoInbox(harness, 'three.fasta', THREE_PROTEINS_FASTA);

    await waitUntil(() => existsSync(path.join(harness.config.folders.done, 'three.fasta')), 60_000, 'source in done/');
    await harness.probe.waitFor(
      () => harness.probe.json<PredictionMessage>(topics.predictions).filter((m) => m.origin === 'three.fasta').length === 3,
      20_000,
      'three predictions',
    );

    const rows = queryPredictions(harness).filter((row) => row.origin === 'three.fasta');
    expect(rows.map((row) => row.record_id)).toEqual(['sp|P0CG48|UBC_HUMAN', 'sp|P01308|INS_HUMAN', 'sp|P42212|GFP_AEQVI']);
    expect(rows.map((row) => row.length)).toEqual([UBIQUITIN_HUMAN.length, INSULIN_HUMAN.length, GFP_AEQVI.length]);
    expect(rows.every((row) => row.source === 'inbox')).toBe(true);

    const messages = harness.probe.json<PredictionMessage>(topics.predictions).filter((m) => m.origin === 'three.fasta');
    for (const message of messages) {
      expect(message.prediction.localization.top.length).toBeGreaterThan(0);
      expect(message.prediction.go.top.length).toBeGreaterThan(0);
      expect(Number.isFinite(message.prediction.lm.logLikelihood)).toBe(true);
    }

    const results = JSON.parse(readFileSync(path.join(harness.config.folders.outbox, 'three.fasta.json'), 'utf8')) as Record<string, unknown>;
    expect(JSON.stringify(results)).toContain('sp|P42212|GFP_AEQVI');
    expect(readdirSync(harness.config.folders.inbox).filter((name) => !name.startsWith('.'))).toEqual([]);
  });

  test('MQTT request gets a reply with its id', async () => {
    const { topics } = harness.endpoints;
    await harness.probe.publish(topics.request, JSON.stringify({ id: 'req-lysozyme', sequence: LYSOZYME_CHICK }));

    await harness.probe.waitFor(() => harness.probe.json<ResponseMessage>(topics.response).some((m) => m.id === 'req-lysozyme'), 30_000, 'reply');
    const reply = harness.probe.json<ResponseMessage>(topics.response).find((m) => m.id === 'req-lysozyme')!;

    expect(reply.status).toBe('ok');
    expect(reply.results).toHaveLength(1);
    expect(reply.results[0].length).toBe(LYSOZYME_CHICK.length);
    expect(reply.results[0].prediction.localization.top.length).toBeGreaterThan(0);
  });

  test('raw FASTA payload is accepted', async () => {
    const { topics } = harness.endpoints;
    await harness.probe.publish(topics.request, `>raw-insulin\n${INSULIN_HUMAN}\n`);

    await harness.probe.waitFor(
      () => harness.probe.json<PredictionMessage>(topics.predictions).some((m) => m.recordId === 'raw-insulin'),
      30_000,
      'prediction of the raw FASTA request',
    );
  });

  test('repeated sequence is a cache hit', async () => {
    const { topics } = harness.endpoints;
    const sequence = UBIQUITIN_HUMAN.toLowerCase();
    await harness.probe.publish(topics.request, JSON.stringify({ id: 'repeat-1', sequence }));
    await harness.probe.waitFor(() => harness.probe.json<ResponseMessage>(topics.response).some((m) => m.id === 'repeat-1'), 30_000, 'first reply');
    await harness.probe.publish(topics.request, JSON.stringify({ id: 'repeat-2', sequence }));
    await harness.probe.waitFor(() => harness.probe.json<ResponseMessage>(topics.response).some((m) => m.id === 'repeat-2'), 30_000, 'second reply');

    const replies = harness.probe.json<ResponseMessage>(topics.response);
    const first = replies.find((m) => m.id === 'repeat-1')!.results[0];
    const second = replies.find((m) => m.id === 'repeat-2')!.results[0];
    // The inbox test already predicted this sequence, so both are hits; the stored prediction is reused.
    expect(second.cached).toBe(true);
    expect(second.prediction).toEqual(first.prediction);
    expect(second.changes).toContain('converted to upper case');
  });

  test('bad record goes to errors, the rest is processed', async () => {
    const { topics } = harness.endpoints;
    const fasta = `>good-one\n${LYSOZYME_CHICK}\n>bad-one\nMKV1234TTZ!!QQ\n>good-two\n${GFP_AEQVI}\n`;
    dropIntoInbox(harness, 'mixed.fa', fasta);

    await harness.probe.waitFor(
      () => harness.probe.json<ErrorMessage>(topics.errors).some((m) => m.origin === 'mixed.fa'),
      30_000,
      'error message',
    );
    const error = harness.probe.json<ErrorMessage>(topics.errors).find((m) => m.origin === 'mixed.fa')!;
    expect(error.errors).toHaveLength(1);
    expect(error.errors[0].recordId).toBe('bad-one');
    expect(error.errors[0].code).toBe('INVALID_RESIDUE');

    await waitUntil(() => existsSync(path.join(harness.config.folders.done, 'mixed.fa')), 60_000, 'mixed.fa in done/');
    const rows = queryPredictions(harness).filter((row) => row.origin === 'mixed.fa');
    expect(rows.map((row) => row.record_id)).toEqual(['good-one', 'good-two']);
    expect(existsSync(path.join(harness.config.folders.failed, 'mixed.fa.errors.json'))).toBe(true);
  });

  test('invalid request is rejected with a reply', async () => {
    const { topics } = harness.endpoints;
    await harness.probe.publish(topics.request, '{"id": "broken", "sequence": ');

    await harness.probe.waitFor(
      () => harness.probe.json<ErrorMessage>(topics.errors).some((m) => m.errors.some((e) => e.code === 'INVALID_JSON')),
      30_000,
      'INVALID_JSON error',
    );
  });

  test('telemetry arrives with latency and power', async () => {
    const { topics } = harness.endpoints;
    await harness.probe.waitFor(() => harness.probe.on(topics.telemetry).length >= 1, 15_000, 'telemetry');

    const record = harness.probe.json<Record<string, unknown>>(topics.telemetry).at(-1)!;
    expect(record).toHaveProperty('schemaVersion');
    expect(record).toHaveProperty('modelId', harness.endpoints.modelId);
    expect(record).toHaveProperty('power.source');
    expect(record).toHaveProperty('latencyMs.total.p99');
    expect(record).toHaveProperty('queue.pendingJobs');
  });
});
