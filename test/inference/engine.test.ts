import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Worker, type WorkerOptions } from 'node:worker_threads';
import pino from 'pino';
import { bundledModelDir } from '../../src/config/load';
import type { Prediction } from '../../src/contracts/prediction';
import { InferenceEngine, type InferenceEngineOptions } from '../../src/inference/engine';
import { logSoftmaxAt } from '../../src/inference/language-model';
import type { Manifest } from '../../src/inference/manifest';
import { sigmoid } from '../../src/inference/postprocess';
import { buildAncestorIndex, propagateTruePath } from '../../src/inference/true-path';
import { GFP_AEQVI, INSULIN_HUMAN, LYSOZYME_CHICK, UBIQUITIN_HUMAN } from '../support/proteins';
import { makeTempDir, writePackage } from './fixtures';

// BITNET_EDGE_TEST_MODEL_DIR runs these tests against another model package.
const modelDir = process.env.BITNET_EDGE_TEST_MODEL_DIR || bundledModelDir();
const modelPresent = existsSync(path.join(modelDir, 'manifest.json'));

// NOTE: without the bundled model these tests are skipped, not failed. The unit tests still run.
const describeWithModel = modelPresent ? describe : describe.skip;

function engineOptions(overrides: Partial<InferenceEngineOptions> = {}): InferenceEngineOptions {
  return { modelDir, intraOpThreads: 1, logger: pino({ level: 'silent' }), ...overrides };
}

/** Collects every score of every head, for comparing two predictions. */
function allScores(prediction: Prediction): number[] {
  const heads = [prediction.localization, prediction.go, ...(prediction.function ? [prediction.function] : [])];
  return heads.flatMap((head) => [...head.predicted, ...head.top].map((item) => item.score));
}

/** A 2,000-residue sequence made of real proteins end to end. */
const LONG_PROTEIN = [GFP_AEQVI, LYSOZYME_CHICK, INSULIN_HUMAN, UBIQUITIN_HUMAN].join('').repeat(4).slice(0, 2000);

/** Checks that no listed GO term scores above a listed ancestor. */
function expectTruePath(prediction: Prediction, manifest: Manifest): void {
  const { labels } = manifest.heads.go;
  const ancestors = buildAncestorIndex(labels, manifest.goGraph.parents);
  const listed = new Map([...prediction.go.top, ...prediction.go.predicted].map((term) => [term.label, term.score]));

  for (const [label, score] of listed) {
    for (const ancestor of ancestors[labels.indexOf(label)]) {
      const ancestorScore = listed.get(labels[ancestor]);
      if (ancestorScore !== undefined) expect(ancestorScore).toBeGreaterThanOrEqual(score);
    }
  }
}

/**
 * Script of a worker thread that runs the graph once and posts its outputs. onnxruntime-node
 * cannot run in jest's sandbox because its output arrays come from another realm, so the graph
 * runs in a worker, as the engine does.
 */
const DIRECT_RUN_SCRIPT = `
const { parentPort, workerData } = require('node:worker_threads');
const { InferenceSession, Tensor } = require('onnxruntime-node');
(async () => {
  const session = await InferenceSession.create(workerData.onnxPath);
  const dims = [1, workerData.ids.length];
  const feeds = {
    [workerData.inputIdsName]: new Tensor('int64', BigInt64Array.from(workerData.ids.map(BigInt)), dims),
    [workerData.attentionMaskName]: new Tensor('int64', new BigInt64Array(workerData.ids.length).fill(1n), dims),
  };
  const cache = workerData.prefixCache;
  if (cache) {
    for (const name of [...cache.pastKeys, ...cache.pastValues]) {
      feeds[name] = new Tensor('float32', new Float32Array(0), [1, cache.heads, 0, cache.headDim]);
    }
    feeds[cache.pastStateSum] = new Tensor('float32', new Float32Array(cache.stateSumWidth), [1, cache.stateSumWidth]);
  }
  const results = await session.run(feeds);
  const outputs = {};
  for (const name of workerData.outputNames) outputs[name] = Array.from(results[name].data);
  await session.release();
  parentPort.postMessage(outputs);
})();
`;

/**
 * Runs the graph once with `<bos>` + `residues`, outside the engine, and computes each head's
 * scores and the sequence log-likelihood directly from the logits.
 */
async function runGraphDirectly(manifest: Manifest, residues: string) {
  const { vocab, bosId } = manifest.tokenizer;
  const { heads } = manifest;
  const ids = [bosId, ...residues.split('').map((letter) => vocab.indexOf(letter))];
  const worker = new Worker(DIRECT_RUN_SCRIPT, {
    eval: true,
    workerData: {
      onnxPath: path.join(modelDir, manifest.onnxFile),
      ids,
      inputIdsName: manifest.inputs.inputIds,
      attentionMaskName: manifest.inputs.attentionMask,
      prefixCache: manifest.prefixCache ?? null,
      outputNames: [heads.localization.output, heads.go.output, heads.lm.output],
    },
  });
  const outputs = await new Promise<Record<string, number[]>>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  await worker.terminate();

  const lm = outputs[heads.lm.output];
  let logLikelihood = 0;
  for (let position = 1; position < ids.length; position++) {
    logLikelihood += logSoftmaxAt(lm, (position - 1) * vocab.length, vocab.length, ids[position]);
  }
  const goAncestors = buildAncestorIndex(heads.go.labels, manifest.goGraph.parents);
  return {
    localization: outputs[heads.localization.output].map(sigmoid),
    go: propagateTruePath(outputs[heads.go.output].map(sigmoid), goAncestors),
    logLikelihood,
  };
}

/** Polls `predicate` every 10 ms for up to 5 s. */
async function waitFor(predicate: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not reached within 5 s');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Creates real workers and keeps each in `workers`, so a test can terminate one. */
function recordWorkers(): { workers: Worker[]; createWorker: NonNullable<InferenceEngineOptions['createWorker']> } {
  const workers: Worker[] = [];
  const createWorker = (script: string, options: WorkerOptions): Worker => {
    const worker = new Worker(script, options);
    workers.push(worker);
    return worker;
  };
  return { workers, createWorker };
}

/** Copies the model package to a temporary folder and rewrites its manifest with `edit`. */
function copyModelWithManifest(edit: (manifest: Record<string, unknown>) => void): string {
  const dir = makeTempDir('bitnet-edge-model-');
  cpSync(modelDir, dir, { recursive: true });
  const manifestFile = path.join(dir, 'manifest.json');
  const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as Record<string, unknown>;
  edit(manifest);
  writeFileSync(manifestFile, JSON.stringify(manifest));
  return dir;
}

describeWithModel('InferenceEngine with the bundled model', () => {
  // 0 is the configuration default: onnxruntime picks the thread count.
  const engine = new InferenceEngine(engineOptions({ intraOpThreads: 0 }));

  beforeAll(async () => {
    await engine.start();
  });

  afterAll(async () => {
    await engine.stop();
  });

  test('predicts ubiquitin with every head', async () => {
    const [prediction] = await engine.predict([UBIQUITIN_HUMAN]);
    const manifest = engine.manifest;

    expect(prediction.modelId).toBe(engine.modelId);
    expect(engine.modelId).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(prediction.localization.top).toHaveLength(Math.min(5, manifest.heads.localization.labels.length));
    expect(prediction.go.top).toHaveLength(Math.min(5, manifest.heads.go.labels.length));
    if (manifest.heads.function) {
      expect(prediction.function!.top).toHaveLength(Math.min(5, manifest.heads.function.labels.length));
    } else {
      expect(prediction.function).toBeUndefined();
    }
    expect(prediction.lm.scoredResidues).toBe(UBIQUITIN_HUMAN.length);
    expect(Number.isFinite(prediction.lm.logLikelihood)).toBe(true);
    expect(prediction.lm.perplexity).toBeGreaterThan(1);
    expect(prediction.residuesUsed).toBe(UBIQUITIN_HUMAN.length);
    expect(prediction.truncated).toBe(false);
  });

  test('keeps scores in [0, 1] and labels from the manifest', async () => {
    const [prediction] = await engine.predict([INSULIN_HUMAN]);
    const goLabels = new Set(engine.manifest.heads.go.labels);

    for (const score of allScores(prediction)) {
      expect(score).toBeGreaterThanOrEqual(0);
      expect(score).toBeLessThanOrEqual(1);
    }
    for (const term of prediction.go.top) {
      expect(goLabels.has(term.label)).toBe(true);
      expect(['F', 'P', 'C']).toContain(term.aspect);
    }
  });

  test('lists predicted GO terms with their ancestors', async () => {
    const [prediction] = await engine.predict([LYSOZYME_CHICK]);
    const { labels } = engine.manifest.heads.go;
    const ancestors = buildAncestorIndex(labels, engine.manifest.goGraph.parents);
    const scoreByLabel = new Map(prediction.go.predicted.map((term) => [term.label, term.score]));

    // An ancestor scores at least as high as a predicted term, so it is listed unless its
    // own threshold is higher than that score.
    for (const term of prediction.go.predicted) {
      for (const ancestor of ancestors[labels.indexOf(term.label)]) {
        const threshold = engine.manifest.heads.go.thresholds[ancestor];
        if (threshold <= term.score) expect(scoreByLabel.get(labels[ancestor])).toBeGreaterThanOrEqual(term.score);
      }
    }
  });

  test('returns identical output for the same input', async () => {
    const first = await engine.predict([UBIQUITIN_HUMAN, GFP_AEQVI]);
    const second = await engine.predict([UBIQUITIN_HUMAN, GFP_AEQVI]);

    expect(second).toEqual(first);
  });

  test('reads a 2,000-residue sequence in windows', async () => {
    const [prediction] = await engine.predict([LONG_PROTEIN]);

    expect(engine.maxResidues).toBe(engine.manifest.tokenizer.maxLength - 1);
    expect(prediction.windows).toBeGreaterThan(1);
    expect(prediction.truncated).toBe(false);
    expect(prediction.residuesUsed).toBe(2000);
    expect(prediction.lm.scoredResidues).toBe(2000);
    expect(Number.isFinite(prediction.lm.logLikelihood)).toBe(true);
    expect(prediction.lm.perplexity).toBeGreaterThan(1);
    for (const score of allScores(prediction)) {
      expect(score).toBeGreaterThanOrEqual(0);
      expect(score).toBeLessThanOrEqual(1);
    }
    expectTruePath(prediction, engine.manifest);
  });

  test('reads a maxResidues sequence in one window', async () => {
    const sequence = GFP_AEQVI.repeat(3).slice(0, engine.maxResidues);
    const [prediction] = await engine.predict([sequence]);
    const direct = await runGraphDirectly(engine.manifest, sequence);
    const { localization, go } = engine.manifest.heads;

    expect(prediction.windows).toBe(1);
    expect(prediction.residuesUsed).toBe(engine.maxResidues);
    expect(prediction.truncated).toBe(false);
    expect(prediction.lm.scoredResidues).toBe(engine.maxResidues);
    expect(prediction.lm.logLikelihood).toBeCloseTo(direct.logLikelihood, 2);
    for (const item of prediction.localization.top) {
      expect(item.score).toBeCloseTo(direct.localization[localization.labels.indexOf(item.label)], 5);
    }
    for (const term of prediction.go.top) {
      expect(term.score).toBeCloseTo(direct.go[go.labels.indexOf(term.label)], 5);
    }
  });

  test('batches windows of several sequences together', async () => {
    const before = engine.stats;
    const predictions = await engine.predict([LONG_PROTEIN, UBIQUITIN_HUMAN, LONG_PROTEIN.slice(0, 1000)]);
    const after = engine.stats;
    const windows = predictions.reduce((sum, prediction) => sum + prediction.windows!, 0);

    expect(predictions.map((prediction) => prediction.residuesUsed)).toEqual([2000, UBIQUITIN_HUMAN.length, 1000]);
    expect(predictions[1].windows).toBe(1);
    expect(after.inferences).toBe(before.inferences + 3);
    expect(after.windows).toBe(before.windows + windows);
    // Ubiquitin runs in a batch of its own; each 512-token window is longer than a part, so it runs alone, in parts.
    expect(after.batches).toBe(before.batches + 1 + (windows - 1));
  });

  test('returns predictions in input order', async () => {
    const inputs = [GFP_AEQVI, UBIQUITIN_HUMAN, LYSOZYME_CHICK, INSULIN_HUMAN];
    const predictions = await engine.predict(inputs);

    expect(predictions.map((prediction) => prediction.residuesUsed)).toEqual(inputs.map((sequence) => sequence.length));
  });

  test('batched scores match scores run alone', async () => {
    const shorter = UBIQUITIN_HUMAN.slice(0, 70);
    const batchesBefore = engine.stats.batches;
    const [batchedLong, batchedShort] = await engine.predict([UBIQUITIN_HUMAN, shorter]);

    expect(engine.stats.batches).toBe(batchesBefore + 1);

    const [aloneLong] = await engine.predict([UBIQUITIN_HUMAN]);
    const [aloneShort] = await engine.predict([shorter]);
    const pairs: Array<[Prediction, Prediction]> = [
      [batchedLong, aloneLong],
      [batchedShort, aloneShort],
    ];
    for (const [batched, alone] of pairs) {
      const batchedScores = allScores(batched);
      allScores(alone).forEach((score, i) => expect(batchedScores[i]).toBeCloseTo(score, 4));
      expect(batched.lm.logLikelihood).toBeCloseTo(alone.lm.logLikelihood, 2);
    }
  });

  test('counts inferences and batches', async () => {
    const before = engine.stats;
    await engine.predict([UBIQUITIN_HUMAN, INSULIN_HUMAN, GFP_AEQVI]);
    const after = engine.stats;

    expect(after.inferences).toBe(before.inferences + 3);
    expect(after.windows).toBe(before.windows + 3);
    expect(after.batches).toBeGreaterThan(before.batches);
    expect(after.meanRunMs).toBeGreaterThan(0);
  });

  test('rejects an empty sequence', async () => {
    await expect(engine.predict([UBIQUITIN_HUMAN, ''])).rejects.toThrow('sequence 1 is empty');
  });

  test('returns nothing for no sequences', async () => {
    await expect(engine.predict([])).resolves.toEqual([]);
  });
});

describeWithModel('InferenceEngine lifecycle', () => {
  const tempDirs: string[] = [];

  afterAll(() => {
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  });

  test('keeps the main thread responsive', async () => {
    // One batch of 32 long sequences, so the model runs once for a long time.
    const engine = new InferenceEngine(engineOptions({ maxBatchSize: 32, maxBatchTokens: 32 * 512, chunkTokens: 0 }));
    await engine.start();
    const sequences = Array.from({ length: 32 }, (_, i) => GFP_AEQVI.repeat(3).slice(i, i + 511));
    let ticks = 0;
    const timer = setInterval(() => {
      ticks += 1;
    }, 1);

    try {
      const predictions = await engine.predict(sequences);
      expect(predictions).toHaveLength(32);
      expect(engine.stats.batches).toBe(1);
    } finally {
      clearInterval(timer);
      await engine.stop();
    }
    expect(ticks).toBeGreaterThan(0);
  });

  test('rejects predict before start', async () => {
    const engine = new InferenceEngine(engineOptions());
    await expect(engine.predict([UBIQUITIN_HUMAN])).rejects.toThrow('no model loaded; call start() first');
  });

  test('stops idempotently and rejects later calls', async () => {
    const engine = new InferenceEngine(engineOptions());
    await engine.start();
    expect(engine.running).toBe(true);

    await engine.stop();
    await engine.stop();

    expect(engine.running).toBe(false);
    await expect(engine.predict([UBIQUITIN_HUMAN])).rejects.toThrow('inference engine is not running');
  });

  test('starts one worker for concurrent starts', async () => {
    const { workers, createWorker } = recordWorkers();
    const engine = new InferenceEngine(engineOptions({ createWorker }));

    try {
      await Promise.all([engine.start(), engine.start()]);
      await engine.start();
      expect(workers).toHaveLength(1);
    } finally {
      await engine.stop();
    }
  });

  test('rejects pending runs on stop', async () => {
    const engine = new InferenceEngine(engineOptions());
    await engine.start();
    const running = engine.predict(Array.from({ length: 32 }, () => GFP_AEQVI));
    // The handler is attached before stop() rejects the run, so the rejection is never unhandled.
    const rejected = expect(running).rejects.toThrow('inference engine stopped before the model run finished');
    await engine.stop();

    await rejected;
  });

  test('restarts after a worker crash', async () => {
    const { workers, createWorker } = recordWorkers();
    const engine = new InferenceEngine(engineOptions({ createWorker }));
    await engine.start();

    try {
      // Terminating from outside the engine looks to it like a crash of the worker. It happens
      // between runs because terminating a worker inside onnxruntime's run aborts the process.
      await workers[0].terminate();
      await waitFor(() => !engine.running);

      await expect(engine.predict([UBIQUITIN_HUMAN])).rejects.toThrow(/not running/);
      await engine.start();
      expect(workers).toHaveLength(2);
      const [prediction] = await engine.predict([UBIQUITIN_HUMAN]);
      expect(prediction.residuesUsed).toBe(UBIQUITIN_HUMAN.length);
    } finally {
      await engine.stop();
    }
  });

  test('takes the window overlap from the manifest', async () => {
    // The overlap must cover the domain head's lookahead (32 residues in the bundled model).
    const dir = copyModelWithManifest((manifest) => {
      (manifest.tokenizer as Record<string, unknown>).windowOverlap = 32;
    });
    tempDirs.push(dir);
    const engine = new InferenceEngine(engineOptions({ modelDir: dir }));
    await engine.start();

    try {
      // 990 residues: two windows of 511 overlapping by 32, where the default overlap of 128 needs three.
      const [prediction] = await engine.predict([LONG_PROTEIN.slice(0, 990)]);
      expect(engine.windowOverlap).toBe(32);
      expect(prediction.windows).toBe(2);
      expect(prediction.lm.scoredResidues).toBe(990);
    } finally {
      await engine.stop();
    }
  });

  test('rejects a manifest with a wrong hash', async () => {
    const dir = copyModelWithManifest((manifest) => {
      manifest.modelId = `sha256:${'0'.repeat(64)}`;
    });
    tempDirs.push(dir);
    const engine = new InferenceEngine(engineOptions({ modelDir: dir }));
    const starting = engine.start();

    await expect(starting).rejects.toThrow(`cannot start inference with the model in ${dir}`);
    await expect(starting).rejects.toThrow(`does not match modelId sha256:${'0'.repeat(64)}`);
    expect(engine.running).toBe(false);
  });

  test('rejects a head output the graph lacks', async () => {
    const dir = copyModelWithManifest((manifest) => {
      const heads = manifest.heads as Record<string, Record<string, unknown>>;
      heads.go.output = 'go_scores';
    });
    tempDirs.push(dir);
    const engine = new InferenceEngine(engineOptions({ modelDir: dir }));

    await expect(engine.start()).rejects.toThrow('heads.go.output: "go_scores" is not an output of the graph');
    expect(engine.running).toBe(false);
  });

  test('rejects a graph onnxruntime cannot load', async () => {
    const dir = makeTempDir('bitnet-edge-model-');
    tempDirs.push(dir);
    const manifest = JSON.parse(readFileSync(path.join(modelDir, 'manifest.json'), 'utf8')) as Record<string, unknown>;
    writePackage(dir, manifest, Buffer.from('this is not an ONNX graph'));
    const engine = new InferenceEngine(engineOptions({ modelDir: dir }));
    const starting = engine.start();

    await expect(starting).rejects.toThrow(`cannot start inference with the model in ${dir}`);
    await expect(starting).rejects.toThrow(`onnxruntime failed to load ${path.join(dir, String(manifest.onnxFile))}`);
    expect(engine.running).toBe(false);
  });
});
