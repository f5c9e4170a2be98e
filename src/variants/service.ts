import { performance } from 'node:perf_hooks';
import type { PrefixCache } from '../cache/prefix-cache';
import type { Prediction } from '../contracts/prediction';
import { PAYLOAD_SCHEMA_VERSION } from '../contracts/topics';
import type { Logger } from '../log';
import { parseVariantPayload, type ParsedVariantRequest, type RequestError, type VariantRequest, type VariantRequestLimits } from './request';
import { VariantScorer, type ScanStats, type TokenRunner, type VariantScore } from './scorer';

/** The inference engine as the variant service uses it: a token runner that can be (re)started. */
export interface VariantEngine extends TokenRunner {
  readonly running: boolean;
  start(): Promise<void>;
}

/** Reply to one variant-scoring request, on MQTT, HTTP and the CLI. */
export interface VariantResponse {
  schemaVersion: number;
  /** The request's `id`, echoed; null when it had none. */
  id: string | null;
  status: 'ok' | 'error';
  modelId?: string;
  /** Residues of the normalized sequence. */
  length?: number;
  /** Changes that normalization made to the sequence. */
  changes?: string[];
  /** 1-based positions left out of `"all"` because their residue is X. */
  skippedPositions?: number[];
  wildType?: { logLikelihood: number; prediction: Prediction };
  variants?: VariantScore[];
  /** Use of the model and the prefix cache. */
  stats?: ScanStats;
  errors: RequestError[];
  latencyMs: number;
}

export interface VariantServiceOptions {
  engine: VariantEngine;
  /** Shared prefix cache; absent, every variant runs from the start. */
  cache?: PrefixCache;
  limits: VariantRequestLimits;
  logger: Logger;
  /** Maximum rows of one model run; see VariantScorerOptions. */
  maxBatchRows?: number;
}

/**
 * Serves variant-scoring requests: parses and checks them, scores the variants (see
 * VariantScorer) and builds the reply. Restarts the inference worker when it crashed. Results
 * are returned, not stored.
 */
export class VariantService {
  private readonly log: Logger;
  private scorer: VariantScorer | null = null;
  /** The scan in progress; scans run one at a time, so a queued request keeps no model tensors. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: VariantServiceOptions) {
    this.log = options.logger.child({ component: 'variants' });
  }

  get limits(): VariantRequestLimits {
    return this.options.limits;
  }

  /**
   * Parses a request payload and builds its reply. `maxPayloadBytes` replaces the configured limit
   * (the HTTP body limit differs from the MQTT one). Never rejects: failures become an error reply.
   */
  handlePayload(payload: Buffer, maxPayloadBytes = this.options.limits.maxPayloadBytes): Promise<VariantResponse> {
    return this.respond(parseVariantPayload(payload, { ...this.options.limits, maxPayloadBytes }), performance.now());
  }

  /** Builds the reply to a parsed request. Never rejects: failures become an error reply. */
  async respond(parsed: ParsedVariantRequest, startedAt = performance.now()): Promise<VariantResponse> {
    if (!parsed.ok) {
      this.log.warn({ requestId: parsed.id, code: parsed.errors[0]?.code, errors: parsed.errors.length }, 'variant request rejected');
      return this.errorResponse(parsed.id, parsed.errors, startedAt);
    }

    const { request } = parsed;
    const scan = this.queue.then(() => this.score(request, startedAt));
    this.queue = scan.catch(() => undefined);
    try {
      return await scan;
    } catch (err) {
      this.log.error({ err, requestId: request.id, variants: request.variants.length }, 'variant scoring failed');
      const error = { recordId: request.id ?? 'request', recordIndex: 0, code: 'INFERENCE_FAILED', message: `variant scoring failed: ${(err as Error).message}` };
      return this.errorResponse(request.id, [error], startedAt);
    }
  }

  private async score(request: VariantRequest, startedAt: number): Promise<VariantResponse> {
    const { engine } = this.options;
    if (!engine.running) {
      this.log.warn({ modelId: engine.modelId }, 'restarting the inference worker');
      await engine.start();
    }
    this.scorer ??= new VariantScorer({ runner: engine, cache: this.options.cache, maxBatchRows: this.options.maxBatchRows });

    const scan = await this.scorer.score(request.residues, request.variants, request.options);
    const latencyMs = Math.round(performance.now() - startedAt);
    this.log.info(
      { requestId: request.id, residues: request.residues.length, variants: request.variants.length, latencyMs, ...scan.stats },
      'variants scored',
    );
    return {
      schemaVersion: PAYLOAD_SCHEMA_VERSION,
      id: request.id,
      status: 'ok',
      modelId: engine.modelId,
      length: request.residues.length,
      changes: request.changes,
      ...(request.all ? { skippedPositions: request.skippedPositions } : {}),
      wildType: scan.wildType,
      variants: scan.variants,
      stats: scan.stats,
      errors: [],
      latencyMs,
    };
  }

  private errorResponse(id: string | null, errors: RequestError[], startedAt: number): VariantResponse {
    return { schemaVersion: PAYLOAD_SCHEMA_VERSION, id, status: 'error', errors, latencyMs: Math.round(performance.now() - startedAt) };
  }
}
