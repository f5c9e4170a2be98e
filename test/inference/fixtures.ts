import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Manifest } from '../../src/inference/manifest';

/** Token order of the model contract: four special tokens, the 20 standard amino acids, then X. */
export const CONTRACT_VOCAB = ['<pad>', '<bos>', '<eos>', '<unk>', ...'ACDEFGHIKLMNPQRSTVWY'.split(''), 'X'];

/**
 * A small valid manifest: 3 localization labels, 4 GO terms where GO:0000004 is a child of
 * GO:0000002 through the unlabelled GO:0000099, and no function head.
 */
export function makeManifest(modelId = `sha256:${'0'.repeat(64)}`): Manifest {
  return {
    formatVersion: 1,
    name: 'fixture',
    modelId,
    onnxFile: 'model.onnx',
    createdAt: '2026-01-01T00:00:00Z',
    tokenizer: { vocab: CONTRACT_VOCAB, padId: 0, bosId: 1, eosId: 2, unkId: 3, addBos: true, addEos: false, maxLength: 16 },
    inputs: { inputIds: 'input_ids', attentionMask: 'attention_mask' },
    heads: {
      localization: {
        output: 'localization_logits',
        type: 'multi_label',
        labels: ['nucleus', 'cytoplasm', 'extracellular'],
        thresholds: [0.5, 0.5, 0.9],
      },
      go: {
        output: 'go_logits',
        type: 'multi_label',
        labels: ['GO:0000001', 'GO:0000002', 'GO:0000003', 'GO:0000004'],
        names: ['root term', 'middle term', 'other term', 'leaf term'],
        aspects: ['F', 'F', 'P', 'F'],
        thresholds: [0.5, 0.5, 0.5, 0.5],
      },
      lm: { output: 'lm_logits', type: 'next_token' },
    },
    goGraph: {
      parents: {
        'GO:0000002': ['GO:0000001'],
        'GO:0000099': ['GO:0000002'],
        'GO:0000004': ['GO:0000099'],
      },
    },
  };
}

/** Makes a temporary folder under the OS temp folder; the caller removes it. */
export function makeTempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/**
 * Writes a model package whose graph file (the manifest's onnxFile, model.onnx by default) is
 * `graphBytes` (not a loadable graph unless the bytes are one) and whose manifest is `manifest`
 * with modelId set to the true hash unless given.
 */
export function writePackage(
  dir: string,
  manifest: Record<string, unknown>,
  graphBytes: Buffer = Buffer.from('not an onnx graph'),
  options: { keepModelId?: boolean } = {},
): void {
  const modelId = `sha256:${createHash('sha256').update(graphBytes).digest('hex')}`;
  const onnxFile = typeof manifest.onnxFile === 'string' ? manifest.onnxFile : 'model.onnx';
  writeFileSync(path.join(dir, onnxFile), graphBytes);
  const written = options.keepModelId ? manifest : { ...manifest, modelId };
  writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(written, null, 2));
}
