import path from 'node:path';
import { ModelPackageError, type ModelPackage } from './manifest';
import type { GraphInfo, GraphValueInfo } from './protocol';

/**
 * Graph outputs the manifest's heads read, keyed by the manifest field that names them. `rank` is
 * 3 for per-position heads ([batch, seq, width]) and 2 for per-sequence heads ([batch, width]).
 */
export function headOutputs(pkg: ModelPackage): Array<{ field: string; output: string; width: number; rank: number }> {
  const { heads, tokenizer } = pkg.manifest;
  const outputs = [
    { field: 'heads.localization.output', output: heads.localization.output, width: heads.localization.labels.length, rank: 2 },
    { field: 'heads.go.output', output: heads.go.output, width: heads.go.labels.length, rank: 2 },
  ];
  if (heads.function) {
    outputs.push({ field: 'heads.function.output', output: heads.function.output, width: heads.function.labels.length, rank: 2 });
  }
  if (heads.domain) {
    outputs.push({ field: 'heads.domain.output', output: heads.domain.output, width: heads.domain.labels.length + 1, rank: 3 });
  }
  outputs.push({ field: 'heads.lm.output', output: heads.lm.output, width: tokenizer.vocab.length, rank: 3 });
  return outputs;
}

function checkLastDimension(value: GraphValueInfo, rank: number, width: number, field: string, problems: string[]): void {
  if (value.type !== null && value.type !== 'float32') {
    problems.push(`${field}: graph output "${value.name}" has type ${value.type}, expected float32`);
  }
  if (value.shape.length === 0) return;
  if (value.shape.length !== rank) {
    problems.push(`${field}: graph output "${value.name}" has rank ${value.shape.length}, expected ${rank}`);
    return;
  }
  const last = value.shape[rank - 1];
  if (typeof last === 'number' && last !== width) {
    problems.push(`${field}: graph output "${value.name}" has ${last} columns but the manifest lists ${width}`);
  }
}

/** Past inputs named by the manifest's prefixCache, all float32; none without a prefix cache. */
function prefixCacheInputs(pkg: ModelPackage): Array<{ field: string; name: string; type: string }> {
  const cache = pkg.manifest.prefixCache;
  if (!cache) return [];
  return [
    ...cache.pastKeys.map((name, layer) => ({ field: `prefixCache.pastKeys.${layer}`, name, type: 'float32' })),
    ...cache.pastValues.map((name, layer) => ({ field: `prefixCache.pastValues.${layer}`, name, type: 'float32' })),
    { field: 'prefixCache.pastStateSum', name: cache.pastStateSum, type: 'float32' },
  ];
}

/** Present outputs named by the manifest's prefixCache; none without a prefix cache. */
function prefixCacheOutputs(pkg: ModelPackage): Array<{ field: string; name: string }> {
  const cache = pkg.manifest.prefixCache;
  if (!cache) return [];
  return [
    ...cache.presentKeys.map((name, layer) => ({ field: `prefixCache.presentKeys.${layer}`, name })),
    ...cache.presentValues.map((name, layer) => ({ field: `prefixCache.presentValues.${layer}`, name })),
    { field: 'prefixCache.stateSum', name: cache.stateSum },
  ];
}

function listNames(values: GraphValueInfo[]): string {
  return values.map((value) => value.name).join(', ');
}

/**
 * Checks the loaded graph's inputs and outputs against the manifest: names, element types, rank
 * and, where the graph fixes it, the width of each head. Throws a ModelPackageError listing every
 * mismatch.
 */
export function checkGraph(pkg: ModelPackage, graph: GraphInfo): void {
  const manifestFile = path.join(pkg.dir, 'manifest.json');
  const problems: string[] = [];

  const expectedInputs = [
    { field: 'inputs.inputIds', name: pkg.manifest.inputs.inputIds, type: 'int64' },
    { field: 'inputs.attentionMask', name: pkg.manifest.inputs.attentionMask, type: 'int64' },
    ...prefixCacheInputs(pkg),
  ];
  for (const { field, name, type } of expectedInputs) {
    const input = graph.inputs.find((value) => value.name === name);
    if (!input) {
      problems.push(`${field}: "${name}" is not an input of the graph (inputs: ${listNames(graph.inputs)})`);
    } else if (input.type !== null && input.type !== type) {
      problems.push(`${field}: graph input "${name}" has type ${input.type}, expected ${type}`);
    }
  }
  const cache = pkg.manifest.prefixCache;
  const pastStateSum = cache ? graph.inputs.find((value) => value.name === cache.pastStateSum) : undefined;
  const stateColumns = pastStateSum?.shape[1];
  if (cache && typeof stateColumns === 'number' && stateColumns !== cache.stateSumWidth) {
    problems.push(
      `prefixCache.stateSumWidth: graph input "${cache.pastStateSum}" has ${stateColumns} columns but the manifest gives ${cache.stateSumWidth}`,
    );
  }
  for (const { field, name } of prefixCacheOutputs(pkg)) {
    if (!graph.outputs.some((value) => value.name === name)) {
      problems.push(`${field}: "${name}" is not an output of the graph (outputs: ${listNames(graph.outputs)})`);
    }
  }
  for (const input of graph.inputs) {
    if (!expectedInputs.some((expected) => expected.name === input.name)) {
      problems.push(`inputs: the graph needs input "${input.name}", which the manifest does not name`);
    }
  }

  for (const { field, output, width, rank } of headOutputs(pkg)) {
    const value = graph.outputs.find((candidate) => candidate.name === output);
    if (!value) {
      problems.push(`${field}: "${output}" is not an output of the graph (outputs: ${listNames(graph.outputs)})`);
      continue;
    }
    checkLastDimension(value, rank, width, field, problems);
  }

  if (problems.length > 0) {
    throw new ModelPackageError(
      `model graph ${pkg.onnxPath} does not match ${manifestFile}:\n  ${problems.join('\n  ')}`,
    );
  }
}
