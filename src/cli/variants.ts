import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { PrefixCache } from '../cache/prefix-cache';
import { InferenceEngine } from '../inference/engine';
import { parseFasta } from '../intake/fasta';
import { createLogger } from '../log';
import { parseVariantRequest } from '../variants/request';
import { VariantService, type VariantResponse } from '../variants/service';
import { EXIT_CONFIG, loadConfigOrReport } from './run';

export interface VariantsCommandOptions {
  /** The protein, as residue letters. Exactly one of `sequence` and `fastaFile` is set. */
  sequence?: string;
  /** FASTA file with one record, or - for stdin. */
  fastaFile?: string;
  /** Substitutions such as A123G or A123G:K130R; empty with `all`. */
  variants: string[];
  all: boolean;
  prefixCache: boolean;
  /** Prints the whole reply as JSON in place of a TSV table of LLRs. */
  json: boolean;
  /** Adds each variant's prediction to the JSON reply. The table never shows predictions, so it ignores this. */
  predictions: boolean;
  configFile?: string;
  modelDir?: string;
}

async function readText(file: string): Promise<string> {
  if (file !== '-') return readFile(file, 'utf8');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Returns the record id and residues of a one-record FASTA text, or the reason it cannot be used. */
function singleRecord(text: string, file: string): { id: string; sequence: string } | string {
  const { records, rejected } = parseFasta(text);
  if (rejected.length > 0) return `${file}: ${rejected[0].message}`;
  if (records.length !== 1) return `${file} has ${records.length} FASTA records; variants scores one protein at a time`;
  return { id: records[0].recordId, sequence: records[0].rawSequence };
}

function printTable(reply: VariantResponse): void {
  const lines = ['variant\tllr\tlogLikelihood'];
  for (const variant of reply.variants ?? []) lines.push(`${variant.variant}\t${variant.llr.toFixed(6)}\t${variant.logLikelihood.toFixed(6)}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** Writes one line on the use of the model and the prefix cache to stderr, so the table on stdout stays plain TSV. */
function printStats(reply: VariantResponse): void {
  const { stats } = reply;
  if (!stats) return;
  const positions = stats.computedPositions + stats.reusedPositions;
  const cache = stats.prefixCache ? `prefix cache on, ${stats.reusedPositions} of ${positions} token positions reused` : 'prefix cache off';
  process.stderr.write(`bitnet-edge: ${reply.variants?.length ?? 0} variants in ${reply.latencyMs} ms, ${stats.modelRuns} model runs, ${cache}\n`);
}

/**
 * Scores substitutions of one protein without a daemon and prints a TSV table of LLRs, or with
 * `json` the whole reply. Resolves with the exit status: 0 when the variants were scored, 1 when
 * the input or a variant was rejected or scoring failed.
 */
export async function runVariants(options: VariantsCommandOptions): Promise<number> {
  const config = loadConfigOrReport(options.configFile);
  if (!config) return EXIT_CONFIG;

  let record: { id: string | null; sequence: string } = { id: null, sequence: options.sequence ?? '' };
  if (options.fastaFile !== undefined) {
    let text: string;
    try {
      text = await readText(options.fastaFile);
    } catch (err) {
      process.stderr.write(`bitnet-edge: cannot read ${options.fastaFile}: ${(err as Error).message}\n`);
      return 1;
    }
    const single = singleRecord(text, options.fastaFile);
    if (typeof single === 'string') {
      process.stderr.write(`bitnet-edge: ${single}\n`);
      return 1;
    }
    record = single;
  }

  const parsed = parseVariantRequest(
    { id: record.id, sequence: record.sequence, variants: options.all ? 'all' : options.variants, options: { prefixCache: options.prefixCache, predictions: options.json && options.predictions } },
    { minLength: config.sequence.minLength, maxVariants: config.variants.maxVariants },
  );

  const logger = createLogger(process.env.BITNET_EDGE_LOG_LEVEL ?? 'warn', process.stderr);
  const modelDir = options.modelDir ? path.resolve(options.modelDir) : config.model.dir;
  const engine = new InferenceEngine({ modelDir, intraOpThreads: config.model.intraOpThreads, chunkTokens: config.model.chunkTokens, logger });
  const cache = new PrefixCache({ maxBytes: config.cache.prefixMaxBytes, blockSize: config.cache.prefixBlockResidues });
  const service = new VariantService({ engine, cache, limits: { maxPayloadBytes: Number.MAX_SAFE_INTEGER, minLength: config.sequence.minLength, maxVariants: config.variants.maxVariants }, logger });

  let reply: VariantResponse;
  if (parsed.ok) {
    await engine.start();
    try {
      reply = await service.respond(parsed);
    } finally {
      await engine.stop();
    }
  } else {
    reply = await service.respond(parsed);
  }

  if (options.json) process.stdout.write(`${JSON.stringify(reply, null, 2)}\n`);
  else if (reply.status === 'ok') {
    printTable(reply);
    printStats(reply);
  }
  for (const error of reply.errors) process.stderr.write(`bitnet-edge: ${error.code}: ${error.message}\n`);
  return reply.status === 'ok' ? 0 : 1;
}
