import path from 'node:path';
import { statSync } from 'node:fs';
import { loadModelPackage } from '../inference/manifest';
import { loadConfigOrReport, EXIT_CONFIG } from './run';

/** Prints the model's id, size, heads and held-out metrics as JSON. */
export async function runModelInfo(options: { configFile?: string; modelDir?: string }): Promise<number> {
  const config = loadConfigOrReport(options.configFile);
  if (!config) return EXIT_CONFIG;

  const dir = options.modelDir ? path.resolve(options.modelDir) : config.model.dir;
  const model = await loadModelPackage(dir);
  const { manifest } = model;
  const summary = {
    name: manifest.name,
    modelId: model.modelId,
    dir,
    onnxBytes: statSync(model.onnxPath).size,
    maxLength: manifest.tokenizer.maxLength,
    heads: Object.fromEntries(
      Object.entries(manifest.heads).map(([name, head]) => [name, 'labels' in head && Array.isArray(head.labels) ? head.labels.length : head.type]),
    ),
    prefixCache: manifest.prefixCache
      ? {
          layers: manifest.prefixCache.pastKeys.length,
          heads: manifest.prefixCache.heads,
          headDim: manifest.prefixCache.headDim,
          stateSumWidth: manifest.prefixCache.stateSumWidth,
        }
      : null,
    architecture: manifest.architecture,
    metrics: manifest.metrics,
  };
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  return 0;
}
