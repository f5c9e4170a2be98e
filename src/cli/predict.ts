import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { InferenceEngine } from '../inference/engine';
import { parseFasta } from '../intake/fasta';
import { prepareRecords } from '../intake/records';
import { createLogger } from '../log';
import type { DomainSpan, Prediction, PredictOptions } from '../contracts/prediction';
import type { OrfOrigin, RejectedRecord } from '../contracts/jobs';
import { loadConfigOrReport, EXIT_CONFIG } from './run';

/** Records sent to the model per call; small enough that progress shows on large files. */
const CHUNK_SIZE = 16;

/** One line of `predict` output. */
export interface PredictOutputRecord {
  recordId: string;
  recordIndex: number;
  status: 'ok' | 'error';
  length?: number;
  sequenceHash?: string;
  changes?: string[];
  prediction?: Prediction;
  code?: string;
  message?: string;
  /** Present when the protein was translated from an ORF of a DNA or RNA record. */
  orf?: OrfOrigin;
}

async function readInput(file: string): Promise<string> {
  if (file !== '-') return readFile(file, 'utf8');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Predicts every record of a FASTA file without a daemon and prints JSON or TSV on stdout.
 * Rejected records are reported on stderr and in the output. Resolves with the exit status:
 * 0 when every record was predicted, 1 when any was rejected.
 */
export async function runPredict(options: {
  file: string;
  format: 'json' | 'tsv';
  configFile?: string;
  modelDir?: string;
  /** Options of every record, e.g. `{ residues: true }` for per-residue output. */
  options?: PredictOptions;
}): Promise<number> {
  const config = loadConfigOrReport(options.configFile);
  if (!config) return EXIT_CONFIG;

  let text: string;
  try {
    text = await readInput(options.file);
  } catch (err) {
    process.stderr.write(`bitnet-edge: cannot read ${options.file}: ${(err as Error).message}\n`);
    return 1;
  }

  const parsed = parseFasta(text);
  const { jobs, rejected } = prepareRecords(parsed.records, parsed.rejected, { minLength: config.sequence.minLength, nucleotide: config.sequence });
  const output: PredictOutputRecord[] = rejected.map(rejectionRecord);

  const logger = createLogger(process.env.BITNET_EDGE_LOG_LEVEL ?? 'warn', process.stderr);
  const modelDir = options.modelDir ? path.resolve(options.modelDir) : config.model.dir;
  const engine = new InferenceEngine({ modelDir, intraOpThreads: config.model.intraOpThreads, chunkTokens: config.model.chunkTokens, logger });
  await engine.start();
  try {
    for (let start = 0; start < jobs.length; start += CHUNK_SIZE) {
      const chunk = jobs.slice(start, start + CHUNK_SIZE);
      const predictions = await engine.predict(
        chunk.map((job) => job.sequence.residues),
        chunk.map(() => options.options),
      );
      chunk.forEach((job, index) =>
        output.push({
          recordId: job.recordId,
          recordIndex: job.recordIndex,
          status: 'ok',
          length: job.sequence.residues.length,
          sequenceHash: job.sequence.sequenceHash,
          changes: job.sequence.changes,
          prediction: predictions[index],
          ...(job.orf ? { orf: job.orf } : {}),
        }),
      );
      if (process.stderr.isTTY && jobs.length > CHUNK_SIZE) {
        process.stderr.write(`\rpredicted ${Math.min(start + CHUNK_SIZE, jobs.length)}/${jobs.length}`);
      }
    }
  } finally {
    await engine.stop();
  }
  if (process.stderr.isTTY && jobs.length > CHUNK_SIZE) process.stderr.write('\n');

  output.sort((a, b) => a.recordIndex - b.recordIndex);
  for (const record of rejected) process.stderr.write(`rejected ${record.recordId} (record ${record.recordIndex + 1}): ${record.code}: ${record.message}\n`);
  process.stdout.write(options.format === 'json' ? `${JSON.stringify(output, null, 2)}\n` : formatTsv(output));
  return rejected.length === 0 ? 0 : 1;
}

function rejectionRecord(rejection: RejectedRecord): PredictOutputRecord {
  return { recordId: rejection.recordId, recordIndex: rejection.recordIndex, status: 'error', code: rejection.code, message: rejection.message };
}

const TSV_COLUMNS = ['record_id', 'status', 'length', 'localization', 'go_terms', 'function', 'domains', 'log_likelihood', 'perplexity', 'error'];

/** Formats domain spans as `family:start-end:score`, joined by commas. */
function formatDomains(spans: readonly DomainSpan[] | undefined): string {
  return (spans ?? []).map((span) => `${span.family}:${span.start}-${span.end}:${span.score.toFixed(3)}`).join(',');
}

/**
 * Formats results as tab-separated values with a header; labels are joined by commas with
 * scores. Per-residue output is left out of TSV, so it needs the JSON format.
 */
export function formatTsv(records: PredictOutputRecord[]): string {
  const lines = [TSV_COLUMNS.join('\t')];
  for (const record of records) {
    const p = record.prediction;
    const labels = (items: Array<{ label: string; score: number }> | undefined): string =>
      (items ?? []).map((item) => `${item.label}:${item.score.toFixed(3)}`).join(',');
    lines.push(
      [
        record.recordId,
        record.status,
        record.length ?? '',
        labels(p?.localization.predicted),
        labels(p?.go.predicted),
        labels(p?.function?.predicted),
        formatDomains(p?.domains?.predicted),
        p ? p.lm.logLikelihood.toFixed(3) : '',
        p ? p.lm.perplexity.toFixed(3) : '',
        record.code ? `${record.code}: ${record.message ?? ''}` : '',
      ]
        .map((field) => String(field).replace(/[\t\r\n]/g, ' '))
        .join('\t'),
    );
  }
  return `${lines.join('\n')}\n`;
}
