/**
 * Worker thread entry of the inference engine. onnxruntime-node's `run` blocks the thread it
 * runs on for the whole forward pass, so the session lives here and the main thread keeps
 * serving MQTT keepalives, HTTP and the systemd watchdog.
 */
import { performance } from 'node:perf_hooks';
import { isMainThread, parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import type {
  GraphInfo,
  GraphValueInfo,
  OutputTensor,
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
 * Adds the past inputs of a prefix-cache graph to `feeds`. Without a past in the request, the
 * keys and values have 0 positions (a zero-length tensor, which onnxruntime-node 1.31 accepts)
 * and the state sum is zero.
 */
function addPastFeeds(feeds: Record<string, Tensor>, cache: PrefixCacheNames, request: RunRequest): void {
  const { batchSize, past } = request;
  const length = past?.length ?? 0;
  const dims = [batchSize, cache.heads, length, cache.headDim];

  cache.pastKeys.forEach((name, layer) => {
    feeds[name] = new Tensor('float32', past?.keys[layer] ?? new Float32Array(0), dims);
  });
  cache.pastValues.forEach((name, layer) => {
    feeds[name] = new Tensor('float32', past?.values[layer] ?? new Float32Array(0), dims);
  });
  feeds[cache.pastStateSum] = new Tensor('float32', past?.stateSum ?? new Float32Array(batchSize * cache.dModel), [batchSize, cache.dModel]);
}

async function runBatch(session: InferenceSession, init: WorkerInit, request: RunRequest): Promise<RunResult> {
  const dims = [request.batchSize, request.seqLength];
  const feeds: Record<string, Tensor> = {
    [init.inputIdsName]: new Tensor('int64', request.inputIds, dims),
    [init.attentionMaskName]: new Tensor('int64', request.attentionMask, dims),
  };
  const outputNames = [...init.outputNames];
  if (init.prefixCache) {
    addPastFeeds(feeds, init.prefixCache, request);
    if (request.fetchPresent) {
      const { presentKeys, presentValues, stateSum } = init.prefixCache;
      outputNames.push(...presentKeys, ...presentValues, stateSum);
    }
  } else if (request.past || request.fetchPresent) {
    throw new Error('the model has no prefix-cache inputs, so a run cannot take a past or return present keys and values');
  }

  const startedAt = performance.now();
  const results = await session.run(feeds, outputNames);
  const runMs = performance.now() - startedAt;

  const outputs: Record<string, OutputTensor> = {};
  for (const name of outputNames) {
    const value = results[name];
    if (!(value instanceof Tensor) || value.type !== 'float32') {
      throw new Error(`model output "${name}" is not a float32 tensor`);
    }
    // A copy owns its whole ArrayBuffer, so it can be transferred. The tensor's own data may be
    // a view into memory that onnxruntime allocated.
    outputs[name] = { dims: [...value.dims], data: new Float32Array(value.data as Float32Array) };
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
