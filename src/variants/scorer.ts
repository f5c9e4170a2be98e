import { assemblePast, sliceBlock, type PastLayout, type PrefixCache, type PrefixHit } from '../cache/prefix-cache';
import type { Prediction } from '../contracts/prediction';
import type { TokenRunResult } from '../inference/engine';
import type { Manifest } from '../inference/manifest';
import { buildPrediction, readWindowScores, type PostprocessContext, type WindowScores } from '../inference/postprocess';
import type { OutputTensor, PastState } from '../inference/protocol';
import { logSoftmaxAt } from '../inference/language-model';
import { Tokenizer, type EncodedWindow } from '../inference/tokenizer';
import { planWindows, type SequenceWindow } from '../inference/windows';
import { applyVariant, type Substitution, type Variant } from './substitutions';

/** The part of the inference engine that variant scoring needs. */
export interface TokenRunner {
  readonly modelId: string;
  readonly manifest: Manifest;
  readonly maxResidues: number;
  readonly windowOverlap: number;
  /** Per-model data of postprocessing. */
  readonly postprocess: PostprocessContext;
  /** Runs rows of token ids of one length after `past` (see InferenceEngine.runTokens). */
  runTokens(rows: ReadonlyArray<readonly number[]>, past?: PastState, options?: { present?: boolean; sharedPast?: boolean }): Promise<TokenRunResult>;
}

export interface VariantScorerOptions {
  runner: TokenRunner;
  /** Shared prefix cache. Without it, or for a model without past inputs, every variant runs from the start. */
  cache?: PrefixCache;
  /** Maximum rows of one model run, 32 by default. */
  maxBatchRows?: number;
  /** Maximum tokens of one model run, rows × window tokens with the past included, DEFAULT_MAX_BATCH_TOKENS by default. */
  maxBatchTokens?: number;
}

export interface ScoreOptions {
  /** Reuse cached past keys and values; true by default. */
  prefixCache?: boolean;
  /** Build the heads' prediction of every variant; true by default. */
  predictions?: boolean;
}

export interface VariantScore {
  variant: string;
  substitutions: Substitution[];
  /** ln p(variant sequence) under the language model, in nats, summed over the scored residues. */
  logLikelihood: number;
  /** Log-likelihood ratio: logLikelihood minus the wild type's, in nats. Negative means less likely than the wild type. */
  llr: number;
  /** The heads' output for the variant sequence, as in a prediction message. Absent when not requested. */
  prediction?: Prediction;
}

/** Use of the model and the prefix cache by one scoring call. */
export interface ScanStats {
  /** True when the prefix cache was used. */
  prefixCache: boolean;
  /** Model runs, wild type included. */
  modelRuns: number;
  /** Token positions run through the model over all rows. */
  computedPositions: number;
  /** Token positions taken from the past instead of being run again, over all rows. */
  reusedPositions: number;
}

export interface ScanResult {
  wildType: { logLikelihood: number; prediction: Prediction };
  /** In the order of the variants given. */
  variants: VariantScore[];
  stats: ScanStats;
}

/** Raw outputs of the wild type over one window, position by position. */
interface WildTypeWindow {
  window: SequenceWindow;
  encoded: EncodedWindow;
  /** Per-position outputs (language model, domain head) keyed by output name, [tokens, width]. */
  positionRows: Record<string, Float32Array>;
  /** The language model's rows of `positionRows`, [tokens, vocab]. */
  lmRows: Float32Array;
  /** ln p(token | earlier tokens) at each token position the window scores, 0 at the others. */
  logProbabilities: Float64Array;
  scores: WindowScores;
  /**
   * Keys and values of every position of the window, one row, kept when variants run after an
   * exact wild-type past (LLRs only with the prefix cache). Absent otherwise.
   */
  present?: PastState;
}

/** Result of a variant's run over one window. */
interface WindowResult {
  /** Variant minus wild-type log-likelihood over the positions the window scores. */
  llr: number;
  /** Present when predictions are requested. */
  scores?: WindowScores;
}

/** Variants whose changes in one window start after the same past, so they share it. */
interface RunGroup {
  windowIndex: number;
  /** Token positions of the window before the run, taken from the wild type. */
  pastLength: number;
  /** The cached blocks that contain the past; null when the past is cut from the wild type's present state, or empty. */
  hit: PrefixHit | null;
  members: Array<{ variantIndex: number; ids: number[] }>;
}

/** A variant waiting for the scores of every window that its substitutions touch. */
interface PendingVariant {
  variant: Variant;
  windows: Map<number, WindowResult>;
  remainingWindows: number;
}

/** A batch sent to the worker whose result is not read yet. */
interface PendingBatch {
  group: RunGroup;
  members: RunGroup['members'];
  result: Promise<TokenRunResult>;
}

/** Batches sent to the worker ahead of the one whose scores are being read. */
const PIPELINE_DEPTH = 2;
const DEFAULT_MAX_BATCH_ROWS = 32;
/**
 * Each row of a run keeps its own copy of the past's keys and values, so the limit counts the
 * past. A full scan of a 300-residue protein peaked at 299 MiB with 2,048 tokens and 448 MiB with
 * 8,192, in the same time (27.6 and 28.8 s, 1 thread).
 */
const DEFAULT_MAX_BATCH_TOKENS = 2048;

/**
 * Scores substitutions with the model's causal language model: the log-likelihood ratio of
 * each variant against the wild type, and optionally the heads' prediction for the variant.
 *
 * The sequence is read in the same windows as a prediction. A window that contains no changed
 * residue scores as in the wild type. A window that does is run again after a past of the wild
 * type. The wild type's per-position outputs before that past's end are reused, because causal
 * attention makes them independent of later residues. The wild type itself runs block by block
 * and stores each block in the prefix cache.
 *
 * With predictions, the past ends at the last cached block boundary at or before the variant's
 * first changed token, because the pooled heads need the past's state sum, which the cache
 * holds at block boundaries only. With LLRs only, the past ends right before the first changed
 * token. It is cut from the wild type's keys and values of the whole window, so no wild-type
 * position runs again. Variants that share a past run as one batch, the past repeated over its rows.
 */
export class VariantScorer {
  private readonly tokenizer: Tokenizer;
  private readonly maxBatchRows: number;
  private readonly maxBatchTokens: number;

  constructor(private readonly options: VariantScorerOptions) {
    this.tokenizer = new Tokenizer(options.runner.manifest.tokenizer);
    this.maxBatchRows = options.maxBatchRows ?? DEFAULT_MAX_BATCH_ROWS;
    this.maxBatchTokens = options.maxBatchTokens ?? DEFAULT_MAX_BATCH_TOKENS;
  }

  /** True when the model takes past keys and values and a prefix cache is configured and on. */
  get prefixCacheAvailable(): boolean {
    return this.pastLayout() !== null && this.options.cache?.enabled === true;
  }

  /**
   * Scores `variants` of the normalized `residues`. Every variant must have been parsed
   * against these residues (see parseVariants). Rejects when a model run fails.
   */
  async score(residues: string, variants: readonly Variant[], options: ScoreOptions = {}): Promise<ScanResult> {
    const useCache = options.prefixCache !== false && this.prefixCacheAvailable;
    const withPredictions = options.predictions !== false;
    const stats: ScanStats = { prefixCache: useCache, modelRuns: 0, computedPositions: 0, reusedPositions: 0 };
    const { runner } = this.options;

    // Without the heads' predictions no state sum is needed, so a past can end at any position.
    const exactPast = useCache && !withPredictions;
    const windows = planWindows(residues.length, runner.maxResidues, runner.windowOverlap);
    const wildType: WildTypeWindow[] = [];
    for (const window of windows) {
      const firstOffsets = variants.map((variant) => firstChangedOffset(variant, window)).filter((offset) => offset !== null);
      wildType.push(await this.runWildType(residues, window, useCache, exactPast && firstOffsets.length > 0, firstOffsets, stats));
    }
    const wildTypeScores = wildType.map((entry) => entry.scores);
    const wildTypeLogLikelihood = sumLogLikelihood(wildTypeScores);

    const results = new Array<VariantScore>(variants.length);
    const finish = (variantIndex: number, pending: PendingVariant): void => {
      const llr = [...pending.windows.values()].reduce((sum, window) => sum + window.llr, 0);
      const result: VariantScore = {
        variant: pending.variant.name,
        substitutions: pending.variant.substitutions,
        logLikelihood: wildTypeLogLikelihood + llr,
        llr,
      };
      if (withPredictions) {
        const scores = wildTypeScores.map((wild, index) => pending.windows.get(index)?.scores ?? wild);
        result.prediction = buildPrediction(this.options.runner.postprocess, windows, scores, residues.length);
      }
      results[variantIndex] = result;
    };

    const { groups, pending } = this.planGroups(residues, variants, wildType, useCache, exactPast);
    pending.forEach((entry, variantIndex) => {
      if (entry.remainingWindows === 0) finish(variantIndex, entry);
    });
    await this.runGroups(groups, wildType, withPredictions, stats, (windowIndex, variantIndex, result) => {
      const entry = pending[variantIndex];
      entry.windows.set(windowIndex, result);
      entry.remainingWindows -= 1;
      if (entry.remainingWindows === 0) finish(variantIndex, entry);
    });

    const wildTypePrediction = buildPrediction(this.options.runner.postprocess, windows, wildTypeScores, residues.length);
    return { wildType: { logLikelihood: wildTypeLogLikelihood, prediction: wildTypePrediction }, variants: results, stats };
  }

  /** Returns the past layout of the model, or null when it has no prefix-cache inputs. */
  private pastLayout(): PastLayout | null {
    const spec = this.options.runner.manifest.prefixCache;
    if (!spec) return null;
    return { layers: spec.pastKeys.length, heads: spec.heads, headDim: spec.headDim, stateSumWidth: spec.stateSumWidth };
  }

  /** Output names of the heads with one row per position: the language model and the domain head. */
  private positionOutputNames(): string[] {
    const { heads } = this.options.runner.manifest;
    return heads.domain ? [heads.lm.output, heads.domain.output] : [heads.lm.output];
  }

  /**
   * Runs the wild type of one window. With the prefix cache it starts after the longest cached
   * prefix and runs in chunks up to the window's end, storing each chunk. A chunk ends at each
   * block boundary that a variant starts after: the last boundary at or before the token of
   * one of `firstOffsets`, the variants' first changed residues as offsets in the window. A full
   * scan needs every boundary, and a few variants need few chunks. With `keepPresent` the
   * keys and values of the whole window are kept for exact pasts.
   */
  private async runWildType(
    residues: string,
    window: SequenceWindow,
    useCache: boolean,
    keepPresent: boolean,
    firstOffsets: readonly number[],
    stats: ScanStats,
  ): Promise<WildTypeWindow> {
    const { runner } = this.options;
    const { postprocess } = runner;
    const encoded = this.tokenizer.encodeWindow(residues, window);
    const { ids, firstResidueIndex } = encoded;
    const names = this.positionOutputNames();
    const layout = this.pastLayout();
    const cache = this.options.cache;

    if (!useCache || !layout || !cache) {
      const { outputs } = await runner.runTokens([ids], undefined, { present: false });
      stats.modelRuns += 1;
      stats.computedPositions += ids.length;
      const positionRows = Object.fromEntries(names.map((name) => [name, requireOutput(outputs, name).data]));
      const scores = readWindowScores(postprocess, outputs, [encoded], ids.length)[0];
      return this.wildTypeWindow(window, encoded, positionRows, scores);
    }

    // At least one token runs, because the heads that pool over the whole window need a run.
    const hit = cache.lookup(runner.modelId, ids, firstResidueIndex, ids.length - 1);
    const parts: Record<string, Float32Array[]> = Object.fromEntries(names.map((name) => [name, hit ? hit.blocks.map((block) => block.positionOutputs[name]) : []]));
    let past: PastState | undefined = hit ? assemblePast(hit.blocks, layout, 1) : undefined;
    let position = hit?.length ?? 0;
    stats.reusedPositions += position;

    const boundaries = cache.boundaries(ids.length, firstResidueIndex);
    const needed = new Set(firstOffsets.map((offset) => lastBoundaryAtOrBefore(boundaries, firstResidueIndex + offset)));
    const ends = boundaries.filter((end) => end > position && needed.has(end));
    ends.push(ids.length);

    let last: TokenRunResult | null = null;
    for (const end of ends) {
      // The present state feeds the next chunk and the cache; the chunk to the window's end needs it only on a boundary.
      const stored = boundaries.includes(end);
      last = await runner.runTokens([ids.slice(position, end)], past, { present: stored || end < ids.length || keepPresent });
      stats.modelRuns += 1;
      stats.computedPositions += end - position;
      if (end < ids.length && !last.present) throw new Error('the model returned no present keys and values although it has prefix-cache inputs');

      const chunkRows = Object.fromEntries(names.map((name) => [name, requireOutput(last!.outputs, name).data]));
      for (const name of names) parts[name].push(chunkRows[name]);
      if (stored && last.present) {
        cache.store(runner.modelId, ids, firstResidueIndex, position, end, sliceBlock(last.present, layout, 0, position, end, chunkRows));
      }
      past = last.present ?? undefined;
      position = end;
    }

    const outputs: Record<string, OutputTensor> = { ...last!.outputs };
    const positionRows: Record<string, Float32Array> = {};
    for (const name of names) {
      positionRows[name] = concat(parts[name]);
      outputs[name] = { dims: [1, ids.length, positionRows[name].length / ids.length], data: positionRows[name] };
    }
    const scores = readWindowScores(postprocess, outputs, [encoded], ids.length)[0];
    const wild = this.wildTypeWindow(window, encoded, positionRows, scores);
    if (keepPresent) {
      if (last!.present?.length !== ids.length) {
        throw new Error(`the wild type's present state has ${last!.present?.length ?? 0} positions, expected the window's ${ids.length}`);
      }
      wild.present = last!.present;
    }
    return wild;
  }

  /** Adds ln p(token | earlier tokens) at every position the window scores, as scoreLanguageModel counts them. */
  private wildTypeWindow(
    window: SequenceWindow,
    encoded: EncodedWindow,
    positionRows: Record<string, Float32Array>,
    scores: WindowScores,
  ): WildTypeWindow {
    const lmRows = positionRows[this.options.runner.manifest.heads.lm.output];
    const vocabSize = lmRows.length / encoded.ids.length;
    const logProbabilities = new Float64Array(encoded.ids.length);
    for (let position = firstScoredPosition(encoded); position < encoded.firstResidueIndex + encoded.residueCount; position++) {
      logProbabilities[position] = logSoftmaxAt(lmRows, (position - 1) * vocabSize, vocabSize, encoded.ids[position]);
    }
    return { window, encoded, positionRows, lmRows, logProbabilities, scores };
  }

  /**
   * Groups the variants' changed windows by the past they can start after: the cached prefix, or
   * with `exactPast` the wild type up to the first changed token. A variant whose substitutions
   * are all synonymous still runs from its first listed position, so it checks the cached path
   * against the wild type.
   */
  private planGroups(
    residues: string,
    variants: readonly Variant[],
    wildType: readonly WildTypeWindow[],
    useCache: boolean,
    exactPast: boolean,
  ): { groups: RunGroup[]; pending: PendingVariant[] } {
    const { runner, cache } = this.options;
    const groups = new Map<string, RunGroup>();
    const hits = new Map<string, PrefixHit | null>();

    const pending = variants.map((variant, variantIndex): PendingVariant => {
      const changed = applyVariant(residues, variant);
      const entry: PendingVariant = { variant, windows: new Map(), remainingWindows: 0 };

      wildType.forEach(({ window, encoded }, windowIndex) => {
        const offset = firstChangedOffset(variant, window);
        if (offset === null) return;

        const firstToken = encoded.firstResidueIndex + offset;
        let hit: PrefixHit | null = null;
        if (useCache && cache && !exactPast) {
          const hitKey = `${windowIndex}:${firstToken}`;
          if (!hits.has(hitKey)) hits.set(hitKey, cache.lookup(runner.modelId, encoded.ids, encoded.firstResidueIndex, firstToken));
          hit = hits.get(hitKey) ?? null;
        }
        const pastLength = exactPast ? firstToken : (hit?.length ?? 0);
        const groupKey = `${windowIndex}:${pastLength}`;
        let group = groups.get(groupKey);
        if (!group) {
          group = { windowIndex, pastLength, hit, members: [] };
          groups.set(groupKey, group);
        }
        group.members.push({ variantIndex, ids: this.tokenizer.encodeWindow(changed, window).ids });
        entry.remainingWindows += 1;
      });
      return entry;
    });
    return { groups: [...groups.values()], pending };
  }

  /**
   * Runs the groups in batches and hands each member's window result to `onResult`. Up to
   * PIPELINE_DEPTH batches are sent to the worker before the oldest one's scores are read, so
   * the main thread's postprocessing overlaps the next model run.
   */
  private async runGroups(
    groups: readonly RunGroup[],
    wildType: readonly WildTypeWindow[],
    withPredictions: boolean,
    stats: ScanStats,
    onResult: (windowIndex: number, variantIndex: number, result: WindowResult) => void,
  ): Promise<void> {
    const layout = this.pastLayout();
    const inFlight: PendingBatch[] = [];
    // The past of the group being sent, one row: the worker repeats it for every row of a batch.
    let groupPast: { group: RunGroup; past: PastState } | null = null;

    const send = (group: RunGroup, members: RunGroup['members']): PendingBatch => {
      const { pastLength } = group;
      let past: PastState | undefined;
      if (pastLength > 0 && layout) {
        if (groupPast?.group !== group) {
          const groupPastState = group.hit
            ? assemblePast(group.hit.blocks, layout, 1)
            : wildTypePast(wildType[group.windowIndex], layout, pastLength);
          groupPast = { group, past: groupPastState };
        }
        past = groupPast.past;
      }
      const rows = members.map((member) => member.ids.slice(pastLength));
      const result = this.options.runner.runTokens(rows, past, { present: false, sharedPast: true });
      // A failure is raised where the batch is awaited. The handler keeps a later batch's failure
      // from being reported as unhandled while an earlier batch is awaited.
      result.catch(() => undefined);
      return { group, members, result };
    };

    const receive = async ({ group, members, result }: PendingBatch): Promise<void> => {
      const { outputs } = await result;
      const wild = wildType[group.windowIndex];
      const tokenCount = wild.encoded.ids.length;
      const { pastLength } = group;
      stats.modelRuns += 1;
      stats.computedPositions += members.length * (tokenCount - pastLength);
      stats.reusedPositions += members.length * pastLength;

      const lm = requireOutput(outputs, this.options.runner.manifest.heads.lm.output);
      const llrs = members.map((member, row) => suffixLlr(lm, row, member.ids, wild, pastLength));
      let scores: WindowScores[] = [];
      if (withPredictions) {
        const joined = this.joinOutputs(outputs, wild, members.length, pastLength);
        const encoded = members.map((member) => ({ ...wild.encoded, ids: member.ids }));
        scores = readWindowScores(this.options.runner.postprocess, joined, encoded, tokenCount);
      }
      members.forEach((member, row) => onResult(group.windowIndex, member.variantIndex, { llr: llrs[row], scores: scores[row] }));
    };

    for (const group of groups) {
      // The past counts, because every row keeps its own copy of the past's keys and values.
      const runTokens = wildType[group.windowIndex].encoded.ids.length;
      const maxRows = Math.max(1, Math.min(this.maxBatchRows, Math.floor(this.maxBatchTokens / runTokens)));
      // Rows spread evenly over the runs a group needs: 19 variants in runs of at most 6 go as 5, 5, 5 and 4, not 6, 6, 6 and 1.
      const rowsPerRun = Math.ceil(group.members.length / Math.ceil(group.members.length / maxRows));
      for (let first = 0; first < group.members.length; first += rowsPerRun) {
        inFlight.push(send(group, group.members.slice(first, first + rowsPerRun)));
        if (inFlight.length >= PIPELINE_DEPTH) await receive(inFlight.shift()!);
      }
    }
    while (inFlight.length > 0) await receive(inFlight.shift()!);
  }

  /**
   * Puts the wild type's per-position outputs of the first `pastLength` positions in front of
   * each row's outputs of the run, so the outputs cover the whole window as in one pass.
   */
  private joinOutputs(
    outputs: Record<string, OutputTensor>,
    wildType: WildTypeWindow,
    batchSize: number,
    pastLength: number,
  ): Record<string, OutputTensor> {
    if (pastLength === 0) return outputs;
    const tokenCount = wildType.encoded.ids.length;
    const joined: Record<string, OutputTensor> = { ...outputs };

    for (const name of this.positionOutputNames()) {
      const run = requireOutput(outputs, name);
      const width = run.dims[2];
      const runLength = tokenCount - pastLength;
      const prefix = wildType.positionRows[name].subarray(0, pastLength * width);
      const data = new Float32Array(batchSize * tokenCount * width);
      for (let row = 0; row < batchSize; row++) {
        data.set(prefix, row * tokenCount * width);
        data.set(run.data.subarray(row * runLength * width, (row + 1) * runLength * width), (row * tokenCount + pastLength) * width);
      }
      joined[name] = { dims: [batchSize, tokenCount, width], data };
    }
    return joined;
  }
}

function requireOutput(outputs: Record<string, OutputTensor>, name: string): OutputTensor {
  const tensor = outputs[name];
  if (!tensor) throw new Error(`model output "${name}" is missing from the run result`);
  return tensor;
}

function concat(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * Returns the wild type's keys and values of the first `length` positions of its window, one
 * row. The state sum of that past would need the final states up to `length`, and no output
 * contains them. So the state sum is NaN. Runs after this past are read for per-position outputs
 * only, and a pooled output computed from it would be NaN rather than silently wrong.
 */
function wildTypePast(wildType: WildTypeWindow, layout: PastLayout, length: number): PastState {
  if (!wildType.present) throw new Error('the wild type\'s present state is missing, so no exact past can be cut from it');
  const block = sliceBlock(wildType.present, layout, 0, 0, length, {});
  return { length, keys: block.keys, values: block.values, stateSum: new Float32Array(layout.stateSumWidth).fill(Number.NaN) };
}

/** Returns the offset in the window of the variant's first substitution inside it, or null when none lies inside. */
function firstChangedOffset(variant: Variant, window: SequenceWindow): number | null {
  const inside = variant.substitutions.find(({ position }) => position - 1 >= window.start && position - 1 < window.end);
  return inside ? inside.position - 1 - window.start : null;
}

/** Returns the largest of the sorted `boundaries` at or before `token`, or 0 when none is. */
function lastBoundaryAtOrBefore(boundaries: readonly number[], token: number): number {
  let found = 0;
  for (const boundary of boundaries) {
    if (boundary > token) break;
    found = boundary;
  }
  return found;
}

/** First token position whose residue a window scores: the row before it must exist. */
function firstScoredPosition(encoded: EncodedWindow): number {
  return Math.max(encoded.firstResidueIndex + encoded.firstScoredResidue, 1);
}

/**
 * Returns the variant's log-likelihood minus the wild type's over the positions a window
 * scores. Positions up to `pastLength` are predicted from the wild type's rows, because those
 * rows see only the shared prefix, so they count only where the variant's token differs (at
 * most the token at `pastLength`). Later positions are predicted by the run's rows. `lm` is the
 * run's output [rows, tokens after the past, vocab].
 */
function suffixLlr(lm: OutputTensor, row: number, ids: readonly number[], wildType: WildTypeWindow, pastLength: number): number {
  const [, runLength, vocabSize] = lm.dims;
  const { encoded, logProbabilities, lmRows } = wildType;
  const end = encoded.firstResidueIndex + encoded.residueCount;
  let llr = 0;

  for (let position = firstScoredPosition(encoded); position <= Math.min(pastLength, end - 1); position++) {
    if (ids[position] === encoded.ids[position]) continue;
    llr += logSoftmaxAt(lmRows, (position - 1) * vocabSize, vocabSize, ids[position]) - logProbabilities[position];
  }

  const first = Math.max(firstScoredPosition(encoded), pastLength + 1);
  for (let position = first; position < end; position++) {
    const offset = (row * runLength + position - 1 - pastLength) * vocabSize;
    llr += logSoftmaxAt(lm.data, offset, vocabSize, ids[position]) - logProbabilities[position];
  }
  return llr;
}

function sumLogLikelihood(scores: readonly WindowScores[]): number {
  return scores.reduce((sum, window) => sum + window.lm.logLikelihood, 0);
}

