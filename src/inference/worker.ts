/**
 * Worker thread entry of the inference engine. onnxruntime-node's `run` blocks the thread it
 * runs on for the whole forward pass, so the session lives here and the main thread keeps
 * serving MQTT keepalives, HTTP and the systemd watchdog.
 */
import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { isMainThread, parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import type {
  GraphInfo,
  GraphValueInfo,
  OutputTensor,
  PastState,
  PrefixCacheNames,
  RunRequest,
  RunResult,
  SessionTuning,
  WorkerInit,
  WorkerMessage,
  WorkerRequest,
} from './protocol';

function describeValues(metadata: readonly InferenceSession.ValueMetadata[]): GraphValueInfo[] {
  return metadata.map((value) =>
    value.isTensor
      ? { name: value.name, type: value.type, shape: [...value.shape] }
      : { name: value.name, type: null, shape: [] },
  );
}

/**
 * Returns the past inputs of a prefix-cache graph. Without a past, the keys and values have 0
 * positions (a zero-length tensor, which onnxruntime-node 1.31 accepts) and the state sum is zero.
 */
function pastFeeds(cache: PrefixCacheNames, batchSize: number, past: PastState | undefined, shared = false): Record<string, Tensor> {
  const length = past?.length ?? 0;
  const dims = [batchSize, cache.heads, length, cache.headDim];
  const feeds: Record<string, Tensor> = {};
  // A shared past has one row; the batch gets it once per row.
  const rows = (tensor: Float32Array): Float32Array => (shared ? repeatRow(tensor, batchSize) : tensor);

  cache.pastKeys.forEach((name, layer) => {
    feeds[name] = new Tensor('float32', past ? rows(past.keys[layer]) : new Float32Array(0), dims);
  });
  cache.pastValues.forEach((name, layer) => {
    feeds[name] = new Tensor('float32', past ? rows(past.values[layer]) : new Float32Array(0), dims);
  });
  feeds[cache.pastStateSum] = new Tensor('float32', past ? rows(past.stateSum) : new Float32Array(batchSize * cache.stateSumWidth), [batchSize, cache.stateSumWidth]);
  return feeds;
}

/** Returns `row` repeated `count` times, one after another. */
function repeatRow(row: Float32Array, count: number): Float32Array {
  if (count === 1) return row;
  const out = new Float32Array(row.length * count);
  for (let index = 0; index < count; index++) out.set(row, index * row.length);
  return out;
}

/** Returns a float32 output of a run, or throws when it is missing or of another type. */
function floatOutput(results: InferenceSession.OnnxValueMapType, name: string): Tensor {
  const value = results[name];
  if (!(value instanceof Tensor) || value.type !== 'float32') {
    throw new Error(`model output "${name}" is not a float32 tensor`);
  }
  return value;
}

/** Returns the present outputs of one run as the past inputs of the next. */
function presentAsPast(cache: PrefixCacheNames, results: InferenceSession.OnnxValueMapType): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  cache.pastKeys.forEach((name, layer) => {
    feeds[name] = floatOutput(results, cache.presentKeys[layer]);
  });
  cache.pastValues.forEach((name, layer) => {
    feeds[name] = floatOutput(results, cache.presentValues[layer]);
  });
  feeds[cache.pastStateSum] = floatOutput(results, cache.stateSum);
  return feeds;
}

/** Returns a float32 output of a run as a copy that owns its whole ArrayBuffer, so it can be transferred. */
function ownedOutput(results: InferenceSession.OnnxValueMapType, name: string): OutputTensor {
  const value = floatOutput(results, name);
  // The tensor's own data may be a view into memory that onnxruntime allocated.
  return { dims: [...value.dims], data: new Float32Array(value.data as Float32Array) };
}

/** Output names of the present state: every layer's keys, then its values, then the state sum. */
function presentNames(cache: PrefixCacheNames): string[] {
  return [...cache.presentKeys, ...cache.presentValues, cache.stateSum];
}

/** Names the worker fetches for `request`: the heads, then the present state when asked for. */
function fetchedNames(init: WorkerInit, request: RunRequest): string[] {
  return init.prefixCache && request.fetchPresent ? [...init.outputNames, ...presentNames(init.prefixCache)] : [...init.outputNames];
}

async function runBatch(session: InferenceSession, init: WorkerInit, request: RunRequest): Promise<RunResult> {
  if (!init.prefixCache && (request.past || request.fetchPresent || request.chunkTokens !== undefined)) {
    throw new Error('the model has no prefix-cache inputs, so a run cannot take a past, return present keys and values, or be read in parts');
  }
  if (init.prefixCache && request.chunkTokens !== undefined && readsInParts(request)) {
    return runInParts(session, init, init.prefixCache, request, request.chunkTokens);
  }

  const dims = [request.batchSize, request.seqLength];
  const feeds: Record<string, Tensor> = {
    [init.inputIdsName]: new Tensor('int64', request.inputIds, dims),
    [init.attentionMaskName]: new Tensor('int64', request.attentionMask, dims),
    ...(init.prefixCache ? pastFeeds(init.prefixCache, request.batchSize, request.past, request.sharedPast) : {}),
  };
  const outputNames = fetchedNames(init, request);

  const startedAt = performance.now();
  const results = await session.run(feeds, outputNames);
  const runMs = performance.now() - startedAt;

  const outputs: Record<string, OutputTensor> = {};
  for (const name of outputNames) outputs[name] = ownedOutput(results, name);
  return { outputs, runMs };
}

/**
 * Returns a function that collects the young generation of this thread's heap. onnxruntime-node
 * returns every output in a new buffer, so each part of a run in parts leaves its present keys
 * and values behind, 3 MiB for a window of 511 residues in parts of 128. This thread allocates
 * little else, so V8 collects them late: resident memory grew by that much per window, up to
 * about 40 MiB, before a collection freed them. Collecting after each such run keeps them out.
 */
function youngGenerationCollector(): () => void {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as ((options?: { type: 'minor' | 'major' }) => void) | undefined;
  return typeof gc === 'function' ? () => gc({ type: 'minor' }) : () => undefined;
}

/**
 * Copies columns [start, end) of each row of a row-major [batchSize, seqLength] array. The
 * result is row-major [batchSize, end - start].
 */
function sliceColumns(source: BigInt64Array, batchSize: number, seqLength: number, start: number, end: number): BigInt64Array {
  const width = end - start;
  const target = new BigInt64Array(batchSize * width);
  for (let row = 0; row < batchSize; row++) {
    target.set(source.subarray(row * seqLength + start, row * seqLength + end), row * width);
  }
  return target;
}

/** True when the request's batch is longer than its part length, so it runs in several parts. */
function readsInParts(request: RunRequest): boolean {
  return request.chunkTokens !== undefined && request.seqLength > request.chunkTokens;
}

/**
 * Runs a batch in consecutive parts of at most `chunkTokens` positions. Each part takes the
 * present keys, values and state sum of the part before it as its past, which causal attention
 * makes exact. Outputs of rank 3 ([batch, positions, width]: the per-position heads) are joined
 * along the positions. Every other output (the pooled heads and the present state) comes from
 * the last part, because it has seen every position.
 */
async function runInParts(
  session: InferenceSession,
  init: WorkerInit,
  cache: PrefixCacheNames,
  request: RunRequest,
  chunkTokens: number,
): Promise<RunResult> {
  const { batchSize, seqLength } = request;
  if (!Number.isInteger(chunkTokens) || chunkTokens < 1) throw new RangeError(`chunkTokens ${chunkTokens} is invalid: expected a positive integer`);

  // A past contains no padding, so each row's padding must start in the last part.
  const lastStart = Math.floor((seqLength - 1) / chunkTokens) * chunkTokens;
  for (let row = 0; row < batchSize; row++) {
    let realTokens = 0;
    for (let column = 0; column < seqLength; column++) realTokens += Number(request.attentionMask[row * seqLength + column]);
    if (realTokens < lastStart) {
      throw new RangeError(
        `row ${row} has ${realTokens} real tokens of ${seqLength}; read in parts of ${chunkTokens}, its padding would fall into a past`,
      );
    }
  }

  const outputNames = fetchedNames(init, request);
  const partNames = [...new Set([...init.outputNames, ...presentNames(cache)])];
  let past = pastFeeds(cache, batchSize, request.past, request.sharedPast);
  const parts: Array<{ width: number; results: InferenceSession.OnnxValueMapType }> = [];
  let runMs = 0;

  for (let start = 0; start < seqLength; start += chunkTokens) {
    const end = Math.min(seqLength, start + chunkTokens);
    const dims = [batchSize, end - start];
    const feeds: Record<string, Tensor> = {
      [init.inputIdsName]: new Tensor('int64', sliceColumns(request.inputIds, batchSize, seqLength, start, end), dims),
      [init.attentionMaskName]: new Tensor('int64', sliceColumns(request.attentionMask, batchSize, seqLength, start, end), dims),
      ...past,
    };
    const isLast = end === seqLength;
    const startedAt = performance.now();
    const results = await session.run(feeds, isLast ? outputNames : partNames);
    runMs += performance.now() - startedAt;

    parts.push({ width: end - start, results });
    if (!isLast) past = presentAsPast(cache, results);
  }

  const last = parts[parts.length - 1].results;
  const outputs: Record<string, OutputTensor> = {};
  for (const name of outputNames) {
    const final = ownedOutput(last, name);
    if (final.dims.length !== 3 || !init.outputNames.includes(name)) {
      outputs[name] = final;
      continue;
    }
    const width = final.dims[2];
    const data = new Float32Array(batchSize * seqLength * width);
    let offset = 0;
    for (const part of parts) {
      const partData = floatOutput(part.results, name).data as Float32Array;
      for (let row = 0; row < batchSize; row++) {
        data.set(partData.subarray(row * part.width * width, (row + 1) * part.width * width), (row * seqLength + offset) * width);
      }
      offset += part.width;
    }
    outputs[name] = { dims: [batchSize, seqLength, width], data };
  }
  return { outputs, runMs };
}

/**
 * Returns the onnxruntime session options of the worker: all graph optimizations, sequential
 * execution (one inter-op thread) and `intraOpThreads` threads inside each operator.
 */
export function sessionOptions(intraOpThreads: number, tuning: SessionTuning): InferenceSession.SessionOptions {
  const spinning = tuning.allowSpinning ? '1' : '0';
  return {
    intraOpNumThreads: intraOpThreads,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    enableCpuMemArena: tuning.cpuMemArena,
    enableMemPattern: tuning.memPattern,
    // onnxruntime-node flattens nested keys into the config entry session.intra_op.allow_spinning.
    extra: { session: { intra_op: { allow_spinning: spinning }, inter_op: { allow_spinning: spinning } } },
  };
}

async function serve(port: MessagePort, init: WorkerInit): Promise<void> {
  let session: InferenceSession;
  try {
    session = await InferenceSession.create(init.onnxPath, sessionOptions(init.intraOpThreads, init.session));
  } catch (err) {
    port.postMessage({ type: 'loadFailed', message: (err as Error).message } satisfies WorkerMessage);
    return;
  }

  const graph: GraphInfo = { inputs: describeValues(session.inputMetadata), outputs: describeValues(session.outputMetadata) };
  port.postMessage({ type: 'ready', graph } satisfies WorkerMessage);

  const collectYoungGeneration = youngGenerationCollector();
  // Requests run one after another in arrival order, although each run already blocks this thread.
  let queue = Promise.resolve();
  port.on('message', (request: WorkerRequest) => {
    if (request.type === 'close') {
      void queue.then(async () => {
        await session.release();
        process.exit(0);
      });
      return;
    }
    queue = queue.then(async () => {
      try {
        const { outputs, runMs } = await runBatch(session, init, request);
        const transfer = Object.values(outputs).map((output) => output.data.buffer as ArrayBuffer);
        const message: WorkerMessage = { type: 'result', requestId: request.requestId, outputs, runMs };
        port.postMessage(message, transfer);
        if (request.past || readsInParts(request)) collectYoungGeneration();
      } catch (err) {
        const message: WorkerMessage = { type: 'runFailed', requestId: request.requestId, message: (err as Error).message };
        port.postMessage(message);
      }
    });
  });
}

// Importing this file on the main thread does nothing. It serves requests only when started as a worker.
if (!isMainThread && parentPort) {
  void serve(parentPort, workerData as WorkerInit);
}
