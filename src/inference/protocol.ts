/** Messages between the inference engine (main thread) and its worker thread. */

/** `workerData` of the worker. */
export interface WorkerInit {
  onnxPath: string;
  /** onnxruntime intra-op threads. 0 lets onnxruntime choose. */
  intraOpThreads: number;
  session: SessionTuning;
  inputIdsName: string;
  attentionMaskName: string;
  /** Graph outputs fetched on every run, in this order. */
  outputNames: string[];
  /** Prefix-cache inputs and outputs, when the graph has them. */
  prefixCache?: PrefixCacheNames;
}

/** onnxruntime session settings that trade speed for CPU time or memory. */
export interface SessionTuning {
  /**
   * Idle intra-op threads spin-wait for the next piece of work, which shortens a run but keeps a
   * core busy between runs. Sets the session config entries `session.intra_op.allow_spinning`
   * and `session.inter_op.allow_spinning`.
   */
  allowSpinning: boolean;
  /** onnxruntime's CPU memory arena, which keeps freed blocks to reuse them in later runs. */
  cpuMemArena: boolean;
  /** Plans the memory of a run ahead from the shapes of earlier runs. */
  memPattern: boolean;
}

/** Graph names and sizes of the prefix cache, from the manifest's `prefixCache`. */
export interface PrefixCacheNames {
  pastKeys: string[];
  pastValues: string[];
  pastStateSum: string;
  presentKeys: string[];
  presentValues: string[];
  stateSum: string;
  heads: number;
  headDim: number;
  stateSumWidth: number;
}

/**
 * Keys, values and final-state sum of the positions before a run, for every row of its batch.
 * The past has no padding, so every row has `length` earlier positions.
 */
export interface PastState {
  /** Earlier positions, `<bos>` included. */
  length: number;
  /** Per layer, float32 [batch, heads, length, headDim], row-major. */
  keys: Float32Array[];
  /** Per layer, float32 [batch, heads, length, headDim], row-major. */
  values: Float32Array[];
  /** Sum of the pooled states of the earlier positions, float32 [batch, stateSumWidth]. */
  stateSum: Float32Array;
}

/** Name, element type and shape of one graph input or output. Symbolic dimensions are strings. */
export interface GraphValueInfo {
  name: string;
  /** onnxruntime tensor type such as `int64` or `float32`, or null for a non-tensor value. */
  type: string | null;
  shape: Array<number | string>;
}

/** Inputs and outputs of the loaded graph, as the onnxruntime session reports them. */
export interface GraphInfo {
  inputs: GraphValueInfo[];
  outputs: GraphValueInfo[];
}

/** A padded batch. Both arrays are row-major [batchSize, seqLength]. */
export interface RunRequest {
  type: 'run';
  requestId: number;
  batchSize: number;
  seqLength: number;
  inputIds: BigInt64Array;
  attentionMask: BigInt64Array;
  /**
   * Past of a graph with a prefix cache. Absent, the worker feeds an empty past (length 0 and a
   * zero state sum), so the run reads the batch on its own.
   */
  past?: PastState;
  /**
   * The past contains one row, which the worker repeats for every row of the batch. Rows that share
   * a prefix (the variants of one protein) then cross the thread boundary once, not once per row.
   */
  sharedPast?: boolean;
  /** Also fetches the present keys, values and state sum, keyed by their graph names. */
  fetchPresent?: boolean;
  /**
   * Reads the batch in consecutive runs of at most this many positions, each run taking the
   * previous one's present keys and values as its past, and returns the outputs of one run over
   * the whole batch. onnxruntime's memory grows with the square of a run's length (the attention
   * scores), so this bounds it. Needs a graph with a prefix cache. Every row's padding must lie
   * in the last part, because a past contains no padding. A single row always qualifies.
   */
  chunkTokens?: number;
}

/**
 * Asks the worker to finish the runs it has queued, release the session and exit. Terminating a
 * worker while onnxruntime-node runs aborts the whole process (a native Napi::Error), so a
 * stop goes through this message.
 */
export interface CloseRequest {
  type: 'close';
}

export type WorkerRequest = RunRequest | CloseRequest;

/** One float32 output of a run, row-major. */
export interface OutputTensor {
  dims: number[];
  data: Float32Array;
}

/** Outputs of one run, keyed by graph output name, with the time `session.run` took. */
export interface RunResult {
  outputs: Record<string, OutputTensor>;
  runMs: number;
}

export type WorkerMessage =
  | { type: 'ready'; graph: GraphInfo }
  | { type: 'loadFailed'; message: string }
  | ({ type: 'result'; requestId: number } & RunResult)
  | { type: 'runFailed'; requestId: number; message: string };
