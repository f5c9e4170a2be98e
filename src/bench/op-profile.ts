import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { InferenceSession, type Tensor } from 'onnxruntime-node';
import { DEFAULT_SESSION_TUNING } from '../inference/engine';
import { sessionOptions } from '../inference/worker';

/** Matrix products whose inputs are int8 or uint8. */
const INTEGER_MATMULS = new Set(['MatMulInteger', 'MatMulIntegerToFloat', 'DynamicQuantizeMatMul', 'MatMulNBits']);
/** Matrix products in float32. FusedMatMul is onnxruntime's MatMul with a transpose or scale folded in. */
const FLOAT_MATMULS = new Set(['MatMul', 'FusedMatMul', 'Gemm']);

/** Kernel time of one operator type, per run. */
export interface OpTypeTime {
  opType: string;
  microseconds: number;
  /** Multiply-accumulates per run, from the input and output shapes; 0 for an operator that is not a matrix product. */
  macs: number;
}

/** Time and MACs per run of a group of matrix products. */
export interface MatmulGroup {
  microseconds: number;
  macs: number;
}

/** onnxruntime's profile of one graph on one workload, averaged over the timed runs. */
export interface OpProfile {
  runs: number;
  /** Sum of all kernel times per run, in microseconds. */
  kernelMicroseconds: number;
  /** Operator types by kernel time, largest first. */
  byOpType: OpTypeTime[];
  /** Matrix products with a constant second input, a weight matrix: the BitLinear layers and the heads. */
  weightMatmuls: MatmulGroup;
  /** Matrix products of two activations with batch dimensions: QKᵀ and attention × V. */
  activationMatmuls: MatmulGroup;
}

interface TraceEvent {
  cat?: string;
  name: string;
  ts: number;
  dur: number;
  args?: {
    op_name?: string;
    input_type_shape?: Array<Record<string, number[]>>;
    output_type_shape?: Array<Record<string, number[]>>;
  };
}

function shapeOf(entry: Record<string, number[]> | undefined): number[] {
  return entry ? (Object.values(entry)[0] ?? []) : [];
}

/**
 * Returns the multiply-accumulates of a matrix product event: every output element is a sum of
 * K products, K being the last dimension of the first input. Gemm and FusedMatMul with a
 * transposed first input would need K from another dimension. The graphs of this project put no
 * transpose on that input.
 */
function matmulMacs(event: TraceEvent): number {
  const outputShape = shapeOf(event.args?.output_type_shape?.[0]);
  const firstInput = shapeOf(event.args?.input_type_shape?.[0]);
  if (outputShape.length === 0 || firstInput.length === 0) return 0;
  const outputElements = outputShape.reduce((product, dim) => product * dim, 1);
  return outputElements * firstInput[firstInput.length - 1];
}

/** Sums the kernel events of the runs after `warmUpRuns` by operator type. */
export function summarizeTrace(events: readonly TraceEvent[], warmUpRuns: number): OpProfile {
  const runs = events.filter((event) => event.cat === 'Session' && event.name === 'model_run').sort((a, b) => a.ts - b.ts);
  const timed = runs.slice(warmUpRuns);
  const startTs = timed.length > 0 ? timed[0].ts : Number.POSITIVE_INFINITY;

  const byOpType = new Map<string, OpTypeTime>();
  const weightMatmuls = { microseconds: 0, macs: 0 };
  const activationMatmuls = { microseconds: 0, macs: 0 };
  let kernelMicroseconds = 0;
  for (const event of events) {
    if (event.cat !== 'Node' || !event.name.endsWith('_kernel_time') || event.ts < startTs) continue;
    const opType = event.args?.op_name ?? 'unknown';
    const entry = byOpType.get(opType) ?? { opType, microseconds: 0, macs: 0 };
    entry.microseconds += event.dur;
    kernelMicroseconds += event.dur;
    byOpType.set(opType, entry);
    if (!INTEGER_MATMULS.has(opType) && !FLOAT_MATMULS.has(opType)) continue;

    const macs = matmulMacs(event);
    entry.macs += macs;
    // The trace lists only the inputs that are not constant, so a weight matrix is missing from it.
    const group = shapeOf(event.args?.input_type_shape?.[1]).length >= 3 ? activationMatmuls : weightMatmuls;
    group.microseconds += event.dur;
    group.macs += macs;
  }

  const count = Math.max(1, timed.length);
  const perRun = [...byOpType.values()].map((entry) => ({ ...entry, microseconds: entry.microseconds / count, macs: entry.macs / count }));
  const groupPerRun = (group: MatmulGroup): MatmulGroup => ({ microseconds: group.microseconds / count, macs: group.macs / count });
  return {
    runs: timed.length,
    kernelMicroseconds: kernelMicroseconds / count,
    byOpType: perRun.sort((a, b) => b.microseconds - a.microseconds),
    weightMatmuls: groupPerRun(weightMatmuls),
    activationMatmuls: groupPerRun(activationMatmuls),
  };
}

/** Returns the time and MACs per run of the integer and of the float32 matrix products of a profile. */
export function matmulTotals(profile: OpProfile): { integer: OpTypeTime; float: OpTypeTime } {
  const total = (opTypes: Set<string>, label: string): OpTypeTime =>
    profile.byOpType
      .filter((entry) => opTypes.has(entry.opType))
      .reduce((sum, entry) => ({ opType: label, microseconds: sum.microseconds + entry.microseconds, macs: sum.macs + entry.macs }), {
        opType: label,
        microseconds: 0,
        macs: 0,
      });
  return { integer: total(INTEGER_MATMULS, 'integer matmuls'), float: total(FLOAT_MATMULS, 'float32 matmuls') };
}

/**
 * Profiles graphs with onnxruntime's profiler (SessionOptions.enableProfiling, which writes a
 * Chrome trace JSON file per session) on `feeds`, with the worker's session options and `threads`
 * threads. The graphs run in turns, so that a change of the machine's load hits all of them alike.
 * Returns the profiles keyed like `files`.
 */
export async function profileGraphs(
  files: ReadonlyMap<string, string>,
  feeds: Record<string, Tensor>,
  threads: number,
  warmUpRuns: number,
  runs: number,
): Promise<Map<string, OpProfile>> {
  const dir = mkdtempSync(path.join(tmpdir(), 'bitnet-profile-'));
  try {
    const sessions = new Map<string, InferenceSession>();
    try {
      for (const [label, file] of files) {
        const options = { ...sessionOptions(threads, DEFAULT_SESSION_TUNING), enableProfiling: true, profileFilePrefix: path.join(dir, label) };
        sessions.set(label, await InferenceSession.create(file, options));
      }
      for (let i = 0; i < warmUpRuns + runs; i++) {
        for (const session of sessions.values()) await session.run(feeds);
      }
      for (const session of sessions.values()) session.endProfiling();
    } finally {
      for (const session of sessions.values()) await session.release();
    }

    const profiles = new Map<string, OpProfile>();
    for (const label of files.keys()) {
      const traceFile = readdirSync(dir).find((name) => name.startsWith(`${label}_`) && name.endsWith('.json'));
      if (!traceFile) throw new Error(`onnxruntime wrote no profile of ${label} into ${dir}`);
      const events = JSON.parse(readFileSync(path.join(dir, traceFile), 'utf8')) as TraceEvent[];
      profiles.set(label, summarizeTrace(events, warmUpRuns));
    }
    return profiles;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
