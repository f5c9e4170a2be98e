/**
 * Child process of the memory breakdown: starts the daemon's parts up to one stage, then prints
 * its resident memory as one JSON line. Run as `node memory-stage.js '<StageRequest JSON>'`.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { InferenceEngine, type InferenceEngineOptions } from '../inference/engine';
import { createLogger } from '../log';
import { EmbeddedBroker } from '../mqtt/broker';
import { databaseFile, Store } from '../store';
import { readProteins } from './proteins';

/** Parts started in a stage, each including the ones before it. */
export type Stage = 'node' | 'services' | 'engine' | 'inference';

export interface StageRequest {
  stage: Stage;
  modelDir: string;
  /** FASTA file predicted in the `inference` stage. */
  proteinsFile: string;
  /** Sequences per predict() call in the `inference` stage, as the daemon's job processor claims them. */
  batchSize: number;
  engine?: Pick<InferenceEngineOptions, 'intraOpThreads' | 'maxBatchTokens' | 'chunkTokens' | 'padLengths' | 'session'>;
}

export interface StageResult {
  rssBytes: number;
  peakRssBytes: number;
  /** Time of the `inference` stage's predictions, in seconds. */
  inferenceSeconds?: number;
}

/** Returns a memory field (VmRSS, VmHWM, RssAnon, RssFile) of a process (this one by default) from /proc/<pid>/status, in bytes. */
export function readStatusBytes(field: 'VmRSS' | 'VmHWM' | 'RssAnon' | 'RssFile', pid: number | 'self' = 'self'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  if (!match) throw new Error(`${field} not found in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

async function runStage(request: StageRequest): Promise<StageResult> {
  const stopActions: Array<() => Promise<void> | void> = [];
  const dir = mkdtempSync(path.join(tmpdir(), 'bitnet-memory-'));
  stopActions.push(() => rmSync(dir, { recursive: true, force: true }));
  const logger = createLogger('silent');
  const result: StageResult = { rssBytes: 0, peakRssBytes: 0 };

  try {
    if (request.stage !== 'node') {
      const store = new Store({ file: databaseFile(path.join(dir, 'data')), logger });
      store.open();
      stopActions.push(() => store.close());
      const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, logger });
      const { port } = await broker.start();
      stopActions.push(() => broker.stop());
      const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`);
      stopActions.push(() => client.endAsync());
    }

    if (request.stage === 'engine' || request.stage === 'inference') {
      const engine = new InferenceEngine({ modelDir: request.modelDir, intraOpThreads: 0, logger, ...request.engine });
      await engine.start();
      stopActions.push(() => engine.stop());

      if (request.stage === 'inference') {
        const residues = readProteins(request.proteinsFile).map((protein) => protein.residues);
        const startedAt = performance.now();
        for (let i = 0; i < residues.length; i += request.batchSize) await engine.predict(residues.slice(i, i + request.batchSize));
        result.inferenceSeconds = (performance.now() - startedAt) / 1000;
      }
    }

    // Lets the worker and the broker settle, and collects garbage so the figure is the retained size.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    global.gc?.();
    result.rssBytes = readStatusBytes('VmRSS');
    result.peakRssBytes = readStatusBytes('VmHWM');
    return result;
  } finally {
    for (const stop of stopActions.reverse()) await stop();
  }
}

if (require.main === module) {
  runStage(JSON.parse(process.argv[2] ?? '{}') as StageRequest)
    .then((result) => {
      console.log(JSON.stringify(result));
      // The worker and sockets are closed, but a stray handle must not keep the bench waiting.
      process.exit(0);
    })
    .catch((err: unknown) => {
      console.error(err);
      process.exit(1);
    });
}
