import path from 'node:path';
import { Worker, type WorkerOptions } from 'node:worker_threads';
import type { Prediction, PredictOptions } from '../contracts/prediction';
import type { Logger } from '../log';
import { packBatch, planBatches, type BatchLimits, type PackedBatch } from './batching';
import { checkGraph, headOutputs } from './graph-check';
import { loadModelPackage, type Manifest, type ModelPackage } from './manifest';
import { buildPrediction, createPostprocessContext, readWindowScores, type PostprocessContext, type WindowScores } from './postprocess';
import type { CloseRequest, GraphInfo, OutputTensor, PastState, RunRequest, RunResult, SessionTuning, WorkerInit, WorkerMessage } from './protocol';
import { Tokenizer, type EncodedWindow } from './tokenizer';
import { planWindows, windowOverlap } from './windows';
import { resolveWorkerScript } from './worker-script';

export interface InferenceEngineOptions {
  /** Model folder with manifest.json and the ONNX graph it names. */
  modelDir: string;
  /** onnxruntime intra-op threads. 0 lets onnxruntime choose. */
  intraOpThreads: number;
  logger: Logger;
  /** Maximum number of sequences in one model run, 8 by default. */
  maxBatchSize?: number;
  /** Maximum number of tokens in one model run, padding included, DEFAULT_MAX_BATCH_TOKENS by default. */
  maxBatchTokens?: number;
  /**
   * Sequence lengths in tokens that a batch of predict() is padded to (see BatchLimits.padLengths),
   * ascending. Lengths above the model's maxLength are ignored. None by default.
   */
  padLengths?: readonly number[];
  /**
   * With a model that has a prefix cache, a window longer than this many tokens runs alone and in
   * consecutive parts of this length, each taking the keys and values of the parts before it
   * (RunRequest.chunkTokens). 0 reads every window in one run. DEFAULT_CHUNK_TOKENS by default.
   */
  chunkTokens?: number;
  /** onnxruntime session settings; each one absent takes DEFAULT_SESSION_TUNING's value. */
  session?: Partial<SessionTuning>;
  /** Factory of the worker thread, so that tests can keep a handle on it. */
  createWorker?: (script: string, options: WorkerOptions) => Worker;
}

/** Counters since the engine was created, warm-up runs excluded. */
export interface InferenceStats {
  /** Sequences predicted. */
  inferences: number;
  /** Windows run through the model: one per sequence of up to maxResidues residues, more for longer ones. */
  windows: number;
  /** Model runs (batches). */
  batches: number;
  /** Mean time of one model run inside the worker, in ms, or 0 before the first run. */
  meanRunMs: number;
}

/** Raw outputs of one model run, and the state to feed as the past of a later run. */
export interface TokenRunResult {
  /** Head outputs keyed by graph output name. */
  outputs: Record<string, OutputTensor>;
  /** Keys, values and state sum over the past and the run's positions. Null when the model has no prefix cache. */
  present: PastState | null;
}

interface PendingRun {
  resolve: (result: RunResult) => void;
  reject: (err: Error) => void;
}

/** A worker thread and the runs still waiting for its result. */
interface WorkerHandle {
  worker: Worker;
  pending: Map<number, PendingRun>;
  /** Set when the engine terminates the worker on purpose. */
  stopping: boolean;
  /** The uncaught error the worker reported before it exited, if any. */
  lastError: Error | null;
}

interface LoadedModel {
  pkg: ModelPackage;
  tokenizer: Tokenizer;
  /** Residues shared by neighbouring windows of a long sequence. */
  windowOverlap: number;
  postprocess: PostprocessContext;
}

/**
 * Default token limit of one model run: two windows of 512 tokens. onnxruntime's CPU arena keeps
 * the memory of the largest run. With 4096 tokens the peak resident size on 500 proteins was 100 to
 * 160 MiB higher, and the run was no faster (docs/benchmarks.md).
 */
export const DEFAULT_MAX_BATCH_TOKENS = 1024;

/**
 * Default part length of a long window. A run's attention scores take heads × n × (past + n)
 * floats per layer, so parts of 128 tokens keep them below a quarter of a 512-token window's.
 * onnxruntime's arena keeps the memory of the largest run, so this sets most of its size.
 */
export const DEFAULT_CHUNK_TOKENS = 128;

/** Session settings of the daemon. */
export const DEFAULT_SESSION_TUNING: SessionTuning = { allowSpinning: false, cpuMemArena: true, memPattern: true };

/** Time a stopping worker gets to finish its current run before it is terminated. */
const CLOSE_TIMEOUT_MS = 10_000;

/** A one-residue sequence run at start, so a graph whose outputs do not fit the manifest fails there. */
const WARM_UP_RESIDUES = 'M';

/**
 * Runs the model in a worker thread. A sequence longer than the model's maximum is read in
 * overlapping windows whose scores are pooled (see planWindows and buildPrediction). The windows
 * of all sequences of one predict call are grouped by length into batches padded on the right
 * (see planBatches). With a prefix-cache model, a window longer than chunkTokens runs alone, in
 * parts that each take the keys and values of the parts before it. A worker crash rejects the runs it owed with an error, and start() can then
 * be called again.
 */
export class InferenceEngine {
  private readonly log: Logger;
  private readonly limits: BatchLimits;
  private readonly chunkTokens: number;
  private model: LoadedModel | null = null;
  private handle: WorkerHandle | null = null;
  private starting: Promise<void> | null = null;
  private nextRequestId = 1;
  private readonly totals = { inferences: 0, windows: 0, batches: 0, runMs: 0 };

  constructor(private readonly options: InferenceEngineOptions) {
    this.log = options.logger.child({ component: 'inference' });
    this.limits = {
      maxBatchSize: options.maxBatchSize ?? 8,
      maxBatchTokens: options.maxBatchTokens ?? DEFAULT_MAX_BATCH_TOKENS,
      padLengths: options.padLengths ?? [],
    };
    this.chunkTokens = options.chunkTokens ?? DEFAULT_CHUNK_TOKENS;
    if (!Number.isInteger(this.chunkTokens) || this.chunkTokens < 0) {
      throw new RangeError(`chunkTokens ${this.chunkTokens} is invalid: expected 0 or a positive integer`);
    }
  }

  /** `sha256:<hex>` of the loaded graph. Throws before the first successful start(). */
  get modelId(): string {
    return this.requireModel().pkg.modelId;
  }

  /** The loaded model's manifest. Throws before the first successful start(). */
  get manifest(): Manifest {
    return this.requireModel().pkg.manifest;
  }

  /** Per-model data of postprocessing, for callers that build predictions from runTokens outputs. Throws before the first successful start(). */
  get postprocess(): PostprocessContext {
    return this.requireModel().postprocess;
  }

  /** Maximum number of residues the model reads in one window. Longer sequences are read in several windows. */
  get maxResidues(): number {
    return this.requireModel().tokenizer.maxResidues;
  }

  /** Residues shared by neighbouring windows of a sequence longer than maxResidues. */
  get windowOverlap(): number {
    return this.requireModel().windowOverlap;
  }

  /** True between a successful start() and stop() or a worker crash. */
  get running(): boolean {
    return this.handle !== null;
  }

  get stats(): InferenceStats {
    const { inferences, windows, batches, runMs } = this.totals;
    return { inferences, windows, batches, meanRunMs: batches > 0 ? runMs / batches : 0 };
  }

  /**
   * Loads and checks the model package, starts the worker and waits until the graph is loaded,
   * checked against the manifest and warmed up. Does nothing when already running. Rejects with
   * an error naming the model folder.
   */
  start(): Promise<void> {
    if (this.handle) return Promise.resolve();
    if (!this.starting) {
      this.starting = this.load().finally(() => {
        this.starting = null;
      });
    }
    return this.starting;
  }

  /** Terminates the worker and rejects the runs still pending. Safe to call more than once. */
  async stop(): Promise<void> {
    if (this.starting) await this.starting.catch(() => undefined);
    const handle = this.handle;
    if (!handle) return;

    this.handle = null;
    await this.terminate(handle);
    this.log.info('inference worker stopped');
  }

  /**
   * Predicts every sequence of upper-case residues, in input order. A sequence longer than
   * maxResidues is read in windows that overlap by windowOverlap residues, and its Prediction
   * gives the number in `windows`. `options[i]` applies to sequence i (none when absent). Rejects
   * when the engine is not running, a sequence is empty, or a model run fails.
   */
  async predict(residues: string[], options: ReadonlyArray<PredictOptions | undefined> = []): Promise<Prediction[]> {
    const model = this.requireModel();
    if (!this.handle) throw new Error('inference engine is not running; call start() first');

    const emptyIndex = residues.findIndex((sequence) => sequence.length === 0);
    if (emptyIndex >= 0) throw new Error(`sequence ${emptyIndex} is empty; the model needs at least one residue`);

    return this.runSequences(model, this.handle, residues, true, options);
  }

  /**
   * Runs rows of token ids, all of one length and without padding, after `past`, and returns the
   * raw outputs with the present state. Without `past` a model with a prefix cache reads the rows
   * on their own. Position numbering continues after the past, so rows that follow a past hold no
   * `<bos>`. The past must have one row per token row, or one row for all of them with
   * `options.sharedPast`. With `options.present` false the present state is not fetched and
   * `present` is null; with a shared past it covers every row. Not counted in `stats`.
   */
  async runTokens(
    rows: ReadonlyArray<readonly number[]>,
    past?: PastState,
    options: { present?: boolean; sharedPast?: boolean } = {},
  ): Promise<TokenRunResult> {
    const model = this.requireModel();
    if (!this.handle) throw new Error('inference engine is not running; call start() first');
    if (rows.length === 0 || rows.some((row) => row.length === 0 || row.length !== rows[0].length)) {
      throw new RangeError('runTokens needs at least one row, and all rows non-empty and of one length');
    }

    const cache = model.pkg.manifest.prefixCache;
    const packed = packBatch(rows, model.pkg.manifest.tokenizer.padId);
    const fetchPresent = cache !== undefined && options.present !== false;
    const chunkTokens = this.partLength(model);
    const shared = past !== undefined && options.sharedPast === true;
    const { outputs } = await this.run(this.handle, packed, false, {
      past,
      fetchPresent,
      ...(shared ? { sharedPast: true } : {}),
      ...(chunkTokens > 0 ? { chunkTokens } : {}),
    });
    if (!cache || !fetchPresent) return { outputs, present: null };

    const take = (name: string): Float32Array => {
      const tensor = outputs[name];
      if (!tensor) throw new Error(`model output "${name}" is missing from the run result`);
      delete outputs[name];
      return tensor.data;
    };
    const presentLength = (past?.length ?? 0) + packed.seqLength;
    const present: PastState = {
      length: presentLength,
      keys: cache.presentKeys.map(take),
      values: cache.presentValues.map(take),
      stateSum: take(cache.stateSum),
    };
    return { outputs, present };
  }

  private async runSequences(
    model: LoadedModel,
    handle: WorkerHandle,
    residues: string[],
    counted: boolean,
    options: ReadonlyArray<PredictOptions | undefined> = [],
  ): Promise<Prediction[]> {
    const windowsBySequence = residues.map((sequence) =>
      planWindows(sequence.length, model.tokenizer.maxResidues, model.windowOverlap),
    );
    const encoded: EncodedWindow[] = windowsBySequence.flatMap((windows, sequenceIndex) =>
      windows.map((window) => model.tokenizer.encodeWindow(residues[sequenceIndex], window)),
    );
    const residueWindows: boolean[] = windowsBySequence.flatMap((windows, sequenceIndex) =>
      windows.map(() => options[sequenceIndex]?.residues === true),
    );
    const scores = new Array<WindowScores>(encoded.length);
    const padLengths = (this.limits.padLengths ?? []).filter((length) => length <= model.pkg.manifest.tokenizer.maxLength);
    const limits = { ...this.limits, padLengths };
    const chunkTokens = this.partLength(model);
    const lengths = encoded.map((window) => window.ids.length);
    // Windows longer than a part run alone and unpadded, because a part's past contains no padding.
    const isLong = (index: number): boolean => chunkTokens > 0 && lengths[index] > chunkTokens;
    const shortIndices = lengths.map((_, index) => index).filter((index) => !isLong(index));
    const batches = [
      ...planBatches(shortIndices.map((index) => lengths[index]), limits).map((batch) => batch.map((member) => shortIndices[member])),
      ...lengths.map((_, index) => index).filter(isLong).map((index) => [index]),
    ];

    await Promise.all(
      batches.map(async (indices) => {
        const members = indices.map((index) => encoded[index]);
        const inParts = isLong(indices[0]);
        const packed = packBatch(members.map((window) => window.ids), model.pkg.manifest.tokenizer.padId, inParts ? [] : padLengths);
        const { outputs } = await this.run(handle, packed, counted, inParts ? { chunkTokens } : {});
        const residueRows = indices.map((index) => residueWindows[index]);
        const batchScores = readWindowScores(model.postprocess, outputs, members, packed.seqLength, residueRows);
        indices.forEach((index, row) => {
          scores[index] = batchScores[row]!;
        });
      }),
    );

    // `encoded` lists the windows sequence by sequence, in window order, so a running offset finds each sequence's scores.
    let offset = 0;
    const predictions = windowsBySequence.map((windows, sequenceIndex) => {
      const sequenceScores = scores.slice(offset, offset + windows.length);
      offset += windows.length;
      return buildPrediction(model.postprocess, windows, sequenceScores, residues[sequenceIndex].length, options[sequenceIndex]);
    });
    if (counted) this.totals.inferences += predictions.length;
    return predictions;
  }

  /** Part length of long runs: chunkTokens with a prefix-cache model, else 0 (one run per window). */
  private partLength(model: LoadedModel): number {
    return model.pkg.manifest.prefixCache ? this.chunkTokens : 0;
  }

  private requireModel(): LoadedModel {
    if (!this.model) throw new Error('no model loaded; call start() first');
    return this.model;
  }

  private async load(): Promise<void> {
    const modelDir = path.resolve(this.options.modelDir);
    let handle: WorkerHandle | null = null;

    try {
      const pkg = await loadModelPackage(modelDir);
      const started = this.spawn(pkg);
      handle = started.handle;
      const graph = await started.ready;
      checkGraph(pkg, graph);

      const tokenizer = new Tokenizer(pkg.manifest.tokenizer);
      const model: LoadedModel = {
        pkg,
        tokenizer,
        windowOverlap: windowOverlap(tokenizer.maxResidues, pkg.manifest.tokenizer.windowOverlap),
        postprocess: createPostprocessContext(pkg),
      };
      await this.runSequences(model, handle, [WARM_UP_RESIDUES], false);
      this.model = model;
      this.handle = handle;
    } catch (err) {
      if (handle) await this.terminate(handle);
      const message = `cannot start inference with the model in ${modelDir}: ${(err as Error).message}`;
      throw new Error(message, { cause: err });
    }

    const { pkg } = this.model;
    this.log.info(
      {
        modelDir,
        modelName: pkg.manifest.name,
        modelId: pkg.modelId,
        intraOpThreads: this.options.intraOpThreads,
        maxResidues: this.model.tokenizer.maxResidues,
        windowOverlap: this.model.windowOverlap,
      },
      'model loaded',
    );
  }

  private spawn(pkg: ModelPackage): { handle: WorkerHandle; ready: Promise<GraphInfo> } {
    const init: WorkerInit = {
      onnxPath: pkg.onnxPath,
      intraOpThreads: this.options.intraOpThreads,
      session: { ...DEFAULT_SESSION_TUNING, ...this.options.session },
      inputIdsName: pkg.manifest.inputs.inputIds,
      attentionMaskName: pkg.manifest.inputs.attentionMask,
      outputNames: headOutputs(pkg).map((head) => head.output),
      ...(pkg.manifest.prefixCache ? { prefixCache: pkg.manifest.prefixCache } : {}),
    };
    const createWorker = this.options.createWorker ?? ((script, options) => new Worker(script, options));
    const worker = createWorker(resolveWorkerScript(), { workerData: init });
    const handle: WorkerHandle = { worker, pending: new Map(), stopping: false, lastError: null };

    const ready = new Promise<GraphInfo>((resolve, reject) => {
      worker.on('message', (message: WorkerMessage) => {
        if (message.type === 'ready') resolve(message.graph);
        else if (message.type === 'loadFailed') {
          // The worker ends by itself after this message; its exit is expected, not a crash.
          handle.stopping = true;
          reject(new Error(`onnxruntime failed to load ${pkg.onnxPath}: ${message.message}`));
        } else this.settleRun(handle, message);
      });
      worker.on('error', (err) => {
        handle.lastError = err;
        this.log.error({ err }, 'inference worker failed');
      });
      worker.on('exit', (code) => {
        const reason = this.exitReason(handle, code);
        reject(reason);
        this.onExit(handle, code, reason);
      });
    });
    return { handle, ready };
  }

  private settleRun(handle: WorkerHandle, message: Exclude<WorkerMessage, { type: 'ready' | 'loadFailed' }>): void {
    const pending = handle.pending.get(message.requestId);
    if (!pending) return;
    handle.pending.delete(message.requestId);

    if (message.type === 'result') pending.resolve({ outputs: message.outputs, runMs: message.runMs });
    else pending.reject(new Error(`model run failed: ${message.message}`));
  }

  private exitReason(handle: WorkerHandle, code: number): Error {
    if (handle.stopping) return new Error('inference engine stopped before the model run finished');
    const detail = handle.lastError ? ` after an uncaught error (${handle.lastError.message})` : '';
    return new Error(`inference worker exited with code ${code}${detail}; call start() to restart it`);
  }

  private onExit(handle: WorkerHandle, code: number, reason: Error): void {
    const pendingRuns = handle.pending.size;
    for (const pending of handle.pending.values()) pending.reject(reason);
    handle.pending.clear();

    if (handle.stopping) return;
    if (this.handle === handle) this.handle = null;
    this.log.error({ err: reason, exitCode: code, pendingRuns }, 'inference worker exited unexpectedly');
  }

  /**
   * Rejects the runs still pending, then lets the worker finish its current run and exit. Only a
   * worker that does not exit within CLOSE_TIMEOUT_MS is terminated.
   */
  private async terminate(handle: WorkerHandle): Promise<void> {
    handle.stopping = true;
    const stopped = new Error('inference engine stopped before the model run finished');
    for (const pending of handle.pending.values()) pending.reject(stopped);
    handle.pending.clear();

    const exited = new Promise<boolean>((resolve) => handle.worker.once('exit', () => resolve(true)));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), CLOSE_TIMEOUT_MS);
    });
    handle.worker.postMessage({ type: 'close' } satisfies CloseRequest);

    const closed = await Promise.race([exited, timedOut]);
    clearTimeout(timer);
    if (!closed) {
      this.log.warn({ timeoutMs: CLOSE_TIMEOUT_MS }, 'inference worker did not exit; terminating it');
      await handle.worker.terminate();
    }
  }

  private run(
    handle: WorkerHandle,
    batch: PackedBatch,
    counted: boolean,
    extra: Pick<RunRequest, 'past' | 'sharedPast' | 'fetchPresent' | 'chunkTokens'> = {},
  ): Promise<RunResult> {
    const requestId = this.nextRequestId++;

    return new Promise((resolve, reject) => {
      handle.pending.set(requestId, {
        resolve: (result) => {
          if (counted) {
            this.totals.windows += batch.batchSize;
            this.totals.batches += 1;
            this.totals.runMs += result.runMs;
          }
          resolve(result);
        },
        reject,
      });
      const request: RunRequest = { type: 'run', requestId, ...batch, ...extra };
      // The token arrays are transferred, not copied: the worker owns them from here on. A past
      // is copied, so the caller can feed it again.
      handle.worker.postMessage(request, [batch.inputIds.buffer as ArrayBuffer, batch.attentionMask.buffer as ArrayBuffer]);
    });
  }
}
