import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { windowOverlap } from './windows';

/** Checks that every per-label list of a head has one entry per label and that labels are unique. */
function checkLabelLists(
  head: { labels: string[]; thresholds: number[]; names?: string[]; aspects?: string[]; goTerms?: string[][] },
  context: z.RefinementCtx,
): void {
  const expected = head.labels.length;
  for (const field of ['thresholds', 'names', 'aspects', 'goTerms'] as const) {
    const list = head[field];
    if (list !== undefined && list.length !== expected) {
      context.addIssue({
        code: z.ZodIssueCode.custom,
        path: [field],
        message: `has ${list.length} entries but labels has ${expected}`,
      });
    }
  }
  if (new Set(head.labels).size !== expected) {
    context.addIssue({ code: z.ZodIssueCode.custom, path: ['labels'], message: 'contains duplicate labels' });
  }
}

const goId = z.string().regex(/^GO:\d{7}$/, 'expected a GO id such as GO:0005737');
const labelList = z.array(z.string().min(1)).min(1);
const thresholdList = z.array(z.number().min(0).max(1));

const multiLabelHeadSchema = z
  .object({
    output: z.string().min(1),
    type: z.literal('multi_label'),
    labels: labelList,
    thresholds: thresholdList,
    /** GO ids of each label, for exports that report GO terms. */
    goTerms: z.array(z.array(goId)).optional(),
  })
  .superRefine(checkLabelLists);

const goHeadSchema = z
  .object({
    output: z.string().min(1),
    type: z.literal('multi_label'),
    labels: z.array(goId).min(1),
    names: z.array(z.string()),
    aspects: z.array(z.enum(['F', 'P', 'C'])),
    thresholds: thresholdList,
  })
  .superRefine(checkLabelLists);

/**
 * Per-residue domain head: output [batch, seq, 1 + families], class 0 is "no domain" and class
 * 1 + i is family i. See shiftDomainRows and decodeDomainSpans in domains.ts for how spans are
 * read from it.
 */
const domainHeadSchema = z
  .object({
    output: z.string().min(1),
    type: z.literal('residue_spans'),
    labels: labelList,
    accessions: z.array(z.string()),
    descriptions: z.array(z.string()),
    thresholds: thresholdList,
    /** Shortest span kept, in residues. */
    minLength: z.number().int().min(1),
    /** Most residues below the threshold between two runs of a family that still merge into one span. */
    maxGap: z.number().int().min(0),
    /**
     * Readout offset in residues: the head's output at residue j + lookahead classifies residue
     * j. Manifests written before the offset existed have none, which reads as 0.
     */
    lookahead: z.number().int().min(0).default(0),
  })
  .superRefine((head, context) => {
    checkLabelLists(head, context);
    for (const field of ['accessions', 'descriptions'] as const) {
      if (head[field].length !== head.labels.length) {
        context.addIssue({
          code: z.ZodIssueCode.custom,
          path: [field],
          message: `has ${head[field].length} entries but labels has ${head.labels.length}`,
        });
      }
    }
  });

/**
 * Names and sizes of the prefix-cache inputs and outputs. past_key_<i> and past_value_<i> are
 * float32 [batch, heads, past, headDim] per layer, past_state_sum is [batch, stateSumWidth], and
 * the present outputs cover past and current positions. stateSumWidth is the width of what the
 * pooled heads average: dModel (the final states) unless the manifest gives another.
 */
const prefixCacheSchema = z
  .object({
    pastKeys: z.array(z.string().min(1)).min(1),
    pastValues: z.array(z.string().min(1)).min(1),
    pastStateSum: z.string().min(1),
    presentKeys: z.array(z.string().min(1)).min(1),
    presentValues: z.array(z.string().min(1)).min(1),
    stateSum: z.string().min(1),
    heads: z.number().int().min(1),
    headDim: z.number().int().min(1),
    dModel: z.number().int().min(1),
    stateSumWidth: z.number().int().min(1).optional(),
  })
  .superRefine((cache, context) => {
    const layers = cache.pastKeys.length;
    for (const field of ['pastValues', 'presentKeys', 'presentValues'] as const) {
      if (cache[field].length !== layers) {
        context.addIssue({
          code: z.ZodIssueCode.custom,
          path: [field],
          message: `has ${cache[field].length} entries but pastKeys has ${layers}`,
        });
      }
    }
  })
  .transform((cache) => ({ ...cache, stateSumWidth: cache.stateSumWidth ?? cache.dModel }));

const tokenizerSchema = z
  .object({
    vocab: z.array(z.string().min(1)).min(5),
    padId: z.number().int().min(0),
    bosId: z.number().int().min(0),
    eosId: z.number().int().min(0),
    unkId: z.number().int().min(0),
    addBos: z.boolean(),
    addEos: z.boolean(),
    maxLength: z.number().int().min(3),
    /** Vocabulary token for residue letters outside the vocabulary; `<unk>` when absent. */
    unknownResidue: z.string().min(1).optional(),
    /** Residues shared by neighbouring windows of a long sequence. When absent, windowOverlap() in windows.ts picks the default. */
    windowOverlap: z.number().int().min(0).optional(),
  })
  .superRefine((tokenizer, context) => {
    for (const field of ['padId', 'bosId', 'eosId', 'unkId'] as const) {
      if (tokenizer[field] >= tokenizer.vocab.length) {
        context.addIssue({
          code: z.ZodIssueCode.custom,
          path: [field],
          message: `is ${tokenizer[field]} but the vocabulary has only ${tokenizer.vocab.length} tokens`,
        });
      }
    }
    if (tokenizer.unknownResidue !== undefined && !tokenizer.vocab.includes(tokenizer.unknownResidue)) {
      context.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['unknownResidue'],
        message: `"${tokenizer.unknownResidue}" is not in the vocabulary`,
      });
    }
    const maxResidues = tokenizer.maxLength - (tokenizer.addBos ? 1 : 0) - (tokenizer.addEos ? 1 : 0);
    if (tokenizer.windowOverlap !== undefined && tokenizer.windowOverlap >= maxResidues) {
      context.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['windowOverlap'],
        message: `is ${tokenizer.windowOverlap} but must be below the ${maxResidues} residues of one window`,
      });
    }
    if (new Set(tokenizer.vocab).size !== tokenizer.vocab.length) {
      context.addIssue({ code: z.ZodIssueCode.custom, path: ['vocab'], message: 'contains duplicate tokens' });
    }
  });

/**
 * Schema of manifest.json, format version 1. Unknown fields are allowed and kept at the top
 * level (for `model info` and the dashboard) and dropped inside the checked sections.
 */
export const manifestSchema = z
  .object({
    formatVersion: z.literal(1),
    name: z.string().min(1),
    modelId: z.string().regex(/^sha256:[0-9a-f]{64}$/, 'expected "sha256:" followed by 64 lower-case hex digits'),
    onnxFile: z
      .string()
      .min(1)
      .refine((file) => path.basename(file) === file && file !== '..', 'expected a file name inside the model folder'),
    createdAt: z.string().optional(),
    tokenizer: tokenizerSchema,
    inputs: z.object({ inputIds: z.string().min(1), attentionMask: z.string().min(1) }),
    /** Present when the graph takes past keys and values; such a graph needs them on every run. */
    prefixCache: prefixCacheSchema.optional(),
    heads: z.object({
      localization: multiLabelHeadSchema,
      go: goHeadSchema,
      function: multiLabelHeadSchema.optional(),
      domain: domainHeadSchema.optional(),
      lm: z.object({ output: z.string().min(1), type: z.literal('next_token') }),
    }),
    goGraph: z.object({ parents: z.record(z.string(), z.array(z.string())) }),
    architecture: z.record(z.string(), z.unknown()).optional(),
    training: z.record(z.string(), z.unknown()).optional(),
    metrics: z.record(z.string(), z.unknown()).optional(),
  })
  .passthrough()
  .superRefine((manifest, context) => {
    const domain = manifest.heads.domain;
    if (!domain) return;

    // Residue j takes the domain row of residue j + lookahead, which the window scoring that
    // residue computes. That window has read residue j only when windows overlap by at least
    // the lookahead.
    const { tokenizer } = manifest;
    const maxResidues = tokenizer.maxLength - (tokenizer.addBos ? 1 : 0) - (tokenizer.addEos ? 1 : 0);
    if (tokenizer.windowOverlap !== undefined && tokenizer.windowOverlap >= maxResidues) return;
    const overlap = windowOverlap(maxResidues, tokenizer.windowOverlap);
    if (domain.lookahead > overlap) {
      context.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['heads', 'domain', 'lookahead'],
        message:
          `is ${domain.lookahead} but windows of a long sequence overlap by only ${overlap} residues; ` +
          'set tokenizer.windowOverlap to at least the lookahead',
      });
    }
  });

export type Manifest = z.infer<typeof manifestSchema>;
export type TokenizerSpec = Manifest['tokenizer'];
export type MultiLabelHead = z.infer<typeof multiLabelHeadSchema>;
export type GoHead = z.infer<typeof goHeadSchema>;
export type DomainHead = z.infer<typeof domainHeadSchema>;
export type PrefixCacheSpec = z.infer<typeof prefixCacheSchema>;

/** A validated model folder whose model.onnx matches the manifest's content hash. */
export interface ModelPackage {
  /** Absolute path of the model folder. */
  dir: string;
  manifest: Manifest;
  /** Absolute path of the ONNX graph. */
  onnxPath: string;
  /** `sha256:<hex>` of model.onnx, equal to `manifest.modelId`. */
  modelId: string;
}

/** Raised when a model folder is missing, invalid or does not match its graph. */
export class ModelPackageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelPackageError';
  }
}

function formatIssue(issue: z.ZodIssue): string {
  const where = issue.path.length > 0 ? issue.path.join('.') : '(root)';
  return `${where}: ${issue.message}`;
}

async function readManifest(file: string): Promise<Manifest> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ModelPackageError(`cannot read the model manifest ${file}: ${(err as Error).message}`);
  }

  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ModelPackageError(`invalid JSON in the model manifest ${file}: ${(err as Error).message}`);
  }

  const result = manifestSchema.safeParse(parsed);
  if (!result.success) {
    const problems = result.error.issues.map(formatIssue);
    throw new ModelPackageError(`invalid model manifest ${file}:\n  ${problems.join('\n  ')}`);
  }
  return result.data;
}

/** Computes `sha256:<hex>` of a file by streaming it, so a large graph is never held in memory twice. */
export async function hashFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer);
  }
  return `sha256:${hash.digest('hex')}`;
}

/**
 * Reads and validates `<dir>/manifest.json` and checks that the SHA-256 of the ONNX graph equals
 * `modelId`. Rejects with a ModelPackageError that names the file and the field at fault.
 */
export async function loadModelPackage(dir: string): Promise<ModelPackage> {
  const modelDir = path.resolve(dir);
  const manifestFile = path.join(modelDir, 'manifest.json');
  const manifest = await readManifest(manifestFile);
  const onnxPath = path.join(modelDir, manifest.onnxFile);

  try {
    const info = await stat(onnxPath);
    if (!info.isFile()) throw new Error('not a regular file');
  } catch (err) {
    throw new ModelPackageError(
      `cannot read the model graph ${onnxPath} named by onnxFile in ${manifestFile}: ${(err as Error).message}`,
    );
  }

  const modelId = await hashFile(onnxPath);
  if (modelId !== manifest.modelId) {
    throw new ModelPackageError(
      `model graph ${onnxPath} has hash ${modelId}, which does not match modelId ${manifest.modelId} in ${manifestFile}; ` +
        'the graph or the manifest was changed or copied incompletely, so export the model package again',
    );
  }
  return { dir: modelDir, manifest, onnxPath, modelId };
}
