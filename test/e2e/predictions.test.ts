import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { bundledModelDir } from '../../src/config/load';
import type { Prediction } from '../../src/contracts/prediction';
import type { PredictionMessage, ResponseMessage } from '../../src/contracts/topics';
import type { Manifest } from '../../src/inference/manifest';
import { DaemonHarness } from '../support/daemon-harness';
import { waitUntil } from '../support/mqtt-probe';
import { GFP_AEQVI, INSULIN_HUMAN, LYSOZYME_CHICK, UBIQUITIN_HUMAN } from '../support/proteins';

// BITNET_EDGE_TEST_MODEL_DIR runs these tests against another model package.
const MODEL_DIR = process.env.BITNET_EDGE_TEST_MODEL_DIR || bundledModelDir();

/** Real proteins sent over MQTT, each with a request id of its own. */
const PROTEINS: Record<string, string> = {
  ubiquitin: UBIQUITIN_HUMAN,
  insulin: INSULIN_HUMAN,
  gfp: GFP_AEQVI,
  lysozyme: LYSOZYME_CHICK,
  // 600 residues: read in two windows.
  long: [GFP_AEQVI, LYSOZYME_CHICK, INSULIN_HUMAN, UBIQUITIN_HUMAN, GFP_AEQVI].join('').slice(0, 600),
};

/** Builds a lookup of every ancestor of a GO term, walked through the manifest's parent lists. */
function ancestorsOf(parents: Record<string, string[]>): (term: string) => Set<string> {
  return (term) => {
    const seen = new Set<string>();
    const stack = [...(parents[term] ?? [])];
    while (stack.length > 0) {
      const next = stack.pop()!;
      if (seen.has(next)) continue;
      seen.add(next);
      stack.push(...(parents[next] ?? []));
    }
    return seen;
  };
}

function readManifest(harness: DaemonHarness): Manifest {
  return JSON.parse(readFileSync(path.join(harness.config.model.dir, 'manifest.json'), 'utf8')) as Manifest;
}

function expectResidueArrays(prediction: Prediction, length: number, manifest: Manifest): void {
  const residues = prediction.residues;
  expect(residues).toBeDefined();
  if (!residues) return;

  expect(residues.observed).toHaveLength(length);
  expect(residues.nextResidue).toHaveLength(length);
  for (const probability of residues.observed) {
    expect(probability).not.toBeNull();
    expect(probability).toBeGreaterThanOrEqual(0);
    expect(probability).toBeLessThanOrEqual(1);
  }
  for (const row of residues.nextResidue) {
    expect(row).toHaveLength(20);
    expect(row!.every((p) => p >= 0 && p <= 1)).toBe(true);
    expect(row!.reduce((sum, p) => sum + p, 0)).toBeCloseTo(1, 2);
  }

  if (!manifest.heads.domain) {
    expect(residues.domain).toBeUndefined();
    return;
  }
  expect(residues.domain).toHaveLength(length);
  for (const row of residues.domain ?? []) {
    expect(row).toHaveLength(manifest.heads.domain.labels.length + 1);
    expect(row.every((p) => p >= 0 && p <= 1)).toBe(true);
    expect(row.reduce((sum, p) => sum + p, 0)).toBeCloseTo(1, 2);
  }
}

describe('daemon predictions of every head', () => {
  let harness: DaemonHarness;
  let manifest: Manifest;

  /** Publishes one request and resolves with its reply. */
  async function request(id: string, sequence: string, options?: Record<string, unknown>): Promise<ResponseMessage> {
    const { topics } = harness.endpoints;
    await harness.probe.publish(topics.request, JSON.stringify({ id, sequence, ...(options ? { options } : {}) }));
    await harness.probe.waitFor(() => harness.probe.json<ResponseMessage>(topics.response).some((m) => m.id === id), 60_000, `reply to ${id}`);
    return harness.probe.json<ResponseMessage>(topics.response).find((m) => m.id === id)!;
  }

  function publishedPredictions(requestIds: string[]): PredictionMessage[] {
    return harness.probe.json<PredictionMessage>(harness.endpoints.topics.predictions).filter((m) => requestIds.includes(m.requestId ?? ''));
  }

  beforeAll(async () => {
    harness = await new DaemonHarness().start({ BITNET_EDGE_MODEL_DIR: MODEL_DIR });
    manifest = readManifest(harness);
    await Promise.all(Object.entries(PROTEINS).map(([id, sequence]) => request(id, sequence)));
    await harness.probe.waitFor(() => publishedPredictions(Object.keys(PROTEINS)).length === Object.keys(PROTEINS).length, 30_000, 'predictions');
  });

  afterAll(async () => {
    await harness.stop();
    harness.remove();
  });

  test('GO scores obey the true-path rule', () => {
    const ancestors = ancestorsOf(manifest.goGraph.parents);
    let pairs = 0;

    for (const message of publishedPredictions(Object.keys(PROTEINS))) {
      const scores = new Map([...message.prediction.go.top, ...message.prediction.go.predicted].map((term) => [term.label, term.score]));
      for (const [term, score] of scores) {
        for (const ancestor of ancestors(term)) {
          const ancestorScore = scores.get(ancestor);
          if (ancestorScore === undefined) continue;
          pairs += 1;
          expect([message.requestId, term, ancestor, ancestorScore >= score]).toEqual([message.requestId, term, ancestor, true]);
        }
      }
    }
    // The check is not vacuous: some listed terms have listed ancestors.
    expect(pairs).toBeGreaterThan(0);
  });

  // A model without a domain head (the format before domains) has no spans to check, so the test is skipped for it.
  const withDomainHead = (JSON.parse(readFileSync(path.join(MODEL_DIR, 'manifest.json'), 'utf8')) as Manifest).heads.domain !== undefined;
  const testDomains = withDomainHead ? test : test.skip;

  testDomains('domain spans lie inside their sequence (needs a domain head)', () => {
    const families = new Set(manifest.heads.domain?.labels ?? []);

    for (const message of publishedPredictions(Object.keys(PROTEINS))) {
      const spans = message.prediction.domains?.predicted;
      expect(spans).toBeDefined();
      for (const span of spans ?? []) {
        expect(families.has(span.family)).toBe(true);
        expect(span.start).toBeGreaterThanOrEqual(1);
        expect(span.start).toBeLessThanOrEqual(span.end);
        expect(span.end).toBeLessThanOrEqual(message.length);
        expect(span.score).toBeGreaterThanOrEqual(0);
        expect(span.score).toBeLessThanOrEqual(1);
      }
    }
  });

  test('predictions without the option carry no residues', () => {
    for (const message of publishedPredictions(Object.keys(PROTEINS))) expect(message.prediction.residues).toBeUndefined();
  });

  test('residues option adds per-residue arrays', async () => {
    // Both sequences were predicted above without the option, so a cache hit would lack residues.
    const short = await request('residues-ubiquitin', UBIQUITIN_HUMAN, { residues: true });
    const long = await request('residues-long', PROTEINS.long, { residues: true });

    expect(short.results[0].cached).toBe(false);
    expectResidueArrays(short.results[0].prediction, UBIQUITIN_HUMAN.length, manifest);
    expect(long.results[0].prediction.windows).toBe(2);
    expectResidueArrays(long.results[0].prediction, PROTEINS.long.length, manifest);
    const [published] = publishedPredictions(['residues-long']);
    expectResidueArrays(published.prediction, PROTEINS.long.length, manifest);
  });

  test('repeated residues request is a cache hit with residues', async () => {
    const first = await request('residues-gfp-1', GFP_AEQVI, { residues: true });
    const second = await request('residues-gfp-2', GFP_AEQVI, { residues: true });
    const plain = await request('plain-gfp', GFP_AEQVI);

    expect(second.results[0].cached).toBe(true);
    expect(second.results[0].prediction).toEqual(first.results[0].prediction);
    expect(plain.results[0].cached).toBe(true);
    expect(plain.results[0].prediction.residues).toBeUndefined();
  });

  test('invalid residues option is rejected', async () => {
    const reply = await request('bad-option', INSULIN_HUMAN, { residues: 'yes' });

    expect(reply.status).toBe('error');
    expect(JSON.stringify(reply)).toContain('options.residues');
  });

  test('JSON inbox record with options gets residues', async () => {
    const records = [
      { id: 'inbox-insulin', sequence: INSULIN_HUMAN, options: { residues: true } },
      { id: 'inbox-lysozyme', sequence: LYSOZYME_CHICK },
    ];
    const staging = path.join(harness.dir, '.records.json.tmp');
    writeFileSync(staging, JSON.stringify(records));
    renameSync(staging, path.join(harness.config.folders.inbox, 'records.json'));

    const resultsFile = path.join(harness.config.folders.outbox, 'records.json.json');
    await waitUntil(() => existsSync(resultsFile), 60_000, 'results file');
    const text = readFileSync(resultsFile, 'utf8');

    const db = new Database(harness.endpoints.databaseFile, { readonly: true });
    try {
      const rows = db
        .prepare(`SELECT j.record_id, r.prediction FROM results r JOIN jobs j ON j.id = r.job_id WHERE j.record_id LIKE 'inbox-%' ORDER BY j.record_id`)
        .all() as Array<{ record_id: string; prediction: string }>;
      const byId = new Map(rows.map((row) => [row.record_id, JSON.parse(row.prediction) as Prediction]));
      expectResidueArrays(byId.get('inbox-insulin')!, INSULIN_HUMAN.length, manifest);
      expect(byId.get('inbox-lysozyme')!.residues).toBeUndefined();
    } finally {
      db.close();
    }
    expect(text).toContain('"nextResidue"');
  });
});
