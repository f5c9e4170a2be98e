import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { DAEMON_NODE_FLAGS } from './daemon-throughput';
import type { StageRequest, StageResult } from './memory-stage';

/** One measured stage or engine variant of the breakdown. */
export interface BreakdownRow {
  label: string;
  result: StageResult;
}

/** A configuration of the `inference` stage. */
export interface EngineVariant {
  label: string;
  engine: NonNullable<StageRequest['engine']>;
  /** Extra environment variables of the child process, such as NODE_OPTIONS. */
  env?: Record<string, string>;
}

/** Runs one stage in a fresh Node process started like the daemon, and returns its figures. */
export function runStage(request: StageRequest, env: Record<string, string> = {}): StageResult {
  const script = path.join(__dirname, 'memory-stage.js');
  const result = spawnSync(process.execPath, ['--expose-gc', ...DAEMON_NODE_FLAGS, script, JSON.stringify(request)], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 900_000,
  });
  if (result.status !== 0) {
    throw new Error(`memory stage ${request.stage} failed: ${(result.stderr || String(result.error)).trim().split('\n').pop()}`);
  }
  return JSON.parse(result.stdout.trim().split('\n').pop()!) as StageResult;
}

/**
 * Measures the resident memory of the daemon's parts, each stage in a fresh Node process. The
 * first stage loads the daemon's modules, the second adds SQLite, pino, the aedes broker and an
 * MQTT client, and the third adds the idle inference worker with its session. Each engine variant
 * then predicts every protein of the file in calls of `batchSize` sequences.
 */
export function measureMemoryBreakdown(base: Omit<StageRequest, 'stage' | 'engine'>, defaults: NonNullable<StageRequest['engine']>, variants: EngineVariant[]): BreakdownRow[] {
  const rows: BreakdownRow[] = [
    { label: 'node + the daemon modules, nothing started', result: runStage({ ...base, stage: 'node' }) },
    { label: '+ SQLite store, pino, aedes broker, MQTT client', result: runStage({ ...base, stage: 'services' }) },
    { label: '+ inference worker and session, idle', result: runStage({ ...base, stage: 'engine', engine: defaults }) },
  ];
  for (const variant of variants) {
    rows.push({ label: `+ predictions, ${variant.label}`, result: runStage({ ...base, stage: 'inference', engine: variant.engine }, variant.env) });
  }
  return rows;
}
