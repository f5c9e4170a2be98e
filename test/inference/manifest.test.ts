import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { checkGraph } from '../../src/inference/graph-check';
import { loadModelPackage, ModelPackageError, type ModelPackage } from '../../src/inference/manifest';
import type { GraphInfo } from '../../src/inference/protocol';
import { makeManifest, makeTempDir, writePackage } from './fixtures';

/** Prefix-cache names and sizes of a one-layer model, without stateSumWidth. */
const PREFIX_CACHE = {
  pastKeys: ['past_key_0'],
  pastValues: ['past_value_0'],
  pastStateSum: 'past_state_sum',
  presentKeys: ['present_key_0'],
  presentValues: ['present_value_0'],
  stateSum: 'state_sum',
  heads: 4,
  headDim: 16,
  dModel: 64,
};

describe('loadModelPackage', () => {
  let dir: string;

  beforeEach(() => {
    dir = makeTempDir('bitnet-edge-manifest-');
  });

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  test('loads a valid package', async () => {
    writePackage(dir, { ...makeManifest() });
    const pkg = await loadModelPackage(dir);

    expect(pkg.dir).toBe(path.resolve(dir));
    expect(pkg.onnxPath).toBe(path.join(dir, 'model.onnx'));
    expect(pkg.modelId).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(pkg.modelId).toBe(pkg.manifest.modelId);
    expect(pkg.manifest.heads.go.labels).toHaveLength(4);
  });

  test('rejects a graph whose hash differs from modelId', async () => {
    writePackage(dir, { ...makeManifest(`sha256:${'a'.repeat(64)}`) }, undefined, { keepModelId: true });
    const loading = loadModelPackage(dir);

    await expect(loading).rejects.toThrow(ModelPackageError);
    await expect(loading).rejects.toThrow(`does not match modelId sha256:${'a'.repeat(64)}`);
    await expect(loading).rejects.toThrow(path.join(dir, 'manifest.json'));
  });

  test('names the file and field of a threshold mismatch', async () => {
    const manifest = makeManifest();
    manifest.heads.localization.thresholds = [0.5];
    writePackage(dir, { ...manifest });
    const loading = loadModelPackage(dir);

    await expect(loading).rejects.toThrow(`invalid model manifest ${path.join(dir, 'manifest.json')}`);
    await expect(loading).rejects.toThrow('heads.localization.thresholds: has 1 entries but labels has 3');
  });

  test('names a missing field', async () => {
    const manifest: Record<string, unknown> = { ...makeManifest() };
    manifest.tokenizer = { ...makeManifest().tokenizer, maxLength: undefined };
    writePackage(dir, manifest);

    await expect(loadModelPackage(dir)).rejects.toThrow('tokenizer.maxLength: Required');
  });

  test('reads windowOverlap', async () => {
    writePackage(dir, { ...makeManifest(), tokenizer: { ...makeManifest().tokenizer, windowOverlap: 4 } });

    expect((await loadModelPackage(dir)).manifest.tokenizer.windowOverlap).toBe(4);
  });

  test('rejects a windowOverlap of a whole window', async () => {
    // maxLength 16 with <bos> leaves windows of 15 residues.
    writePackage(dir, { ...makeManifest(), tokenizer: { ...makeManifest().tokenizer, windowOverlap: 15 } });

    await expect(loadModelPackage(dir)).rejects.toThrow(
      'tokenizer.windowOverlap: is 15 but must be below the 15 residues of one window',
    );
  });

  test('names a GO aspect outside F, P and C', async () => {
    const manifest = makeManifest();
    writePackage(dir, { ...manifest, heads: { ...manifest.heads, go: { ...manifest.heads.go, aspects: ['F', 'F', 'X', 'F'] } } });

    await expect(loadModelPackage(dir)).rejects.toThrow('heads.go.aspects.2');
  });

  test('rejects a special token id outside the vocabulary', async () => {
    const manifest = makeManifest();
    writePackage(dir, { ...manifest, tokenizer: { ...manifest.tokenizer, unkId: 99 } });

    await expect(loadModelPackage(dir)).rejects.toThrow('tokenizer.unkId: is 99 but the vocabulary has only 25 tokens');
  });

  test('rejects an unknownResidue outside the vocabulary', async () => {
    const manifest = makeManifest();
    writePackage(dir, { ...manifest, tokenizer: { ...manifest.tokenizer, unknownResidue: 'B' } });

    await expect(loadModelPackage(dir)).rejects.toThrow('tokenizer.unknownResidue: "B" is not in the vocabulary');
  });

  test('rejects an onnxFile outside the folder', async () => {
    writePackage(dir, { ...makeManifest(), onnxFile: '../model.onnx' });

    await expect(loadModelPackage(dir)).rejects.toThrow('onnxFile: expected a file name inside the model folder');
  });

  test('rejects an unsupported formatVersion', async () => {
    writePackage(dir, { ...makeManifest(), formatVersion: 2 });

    await expect(loadModelPackage(dir)).rejects.toThrow('formatVersion: Invalid literal value, expected 1');
  });

  test('rejects invalid JSON', async () => {
    writePackage(dir, { ...makeManifest() });
    writeFileSync(path.join(dir, 'manifest.json'), '{ "formatVersion": 1,');

    await expect(loadModelPackage(dir)).rejects.toThrow(`invalid JSON in the model manifest ${path.join(dir, 'manifest.json')}`);
  });

  test('rejects a missing manifest', async () => {
    await expect(loadModelPackage(dir)).rejects.toThrow(`cannot read the model manifest ${path.join(dir, 'manifest.json')}`);
  });

  test('rejects a missing graph file', async () => {
    writePackage(dir, { ...makeManifest() });
    rmSync(path.join(dir, 'model.onnx'));

    await expect(loadModelPackage(dir)).rejects.toThrow(`cannot read the model graph ${path.join(dir, 'model.onnx')}`);
  });

  describe('domain head lookahead', () => {
    /** Returns the fixture manifest with a one-family domain head, plus `fields` on that head. */
    function withDomainHead(fields: Record<string, unknown>, tokenizer: Record<string, unknown> = {}): Record<string, unknown> {
      const manifest = makeManifest();
      const domain = {
        output: 'domain_logits',
        type: 'residue_spans',
        labels: ['Kinase'],
        accessions: ['PF00001.1'],
        descriptions: ['kinase domain'],
        thresholds: [0.5],
        minLength: 10,
        maxGap: 4,
        ...fields,
      };
      return { ...manifest, tokenizer: { ...manifest.tokenizer, ...tokenizer }, heads: { ...manifest.heads, domain } };
    }

    test('defaults to 0 when absent', async () => {
      writePackage(dir, withDomainHead({}));

      expect((await loadModelPackage(dir)).manifest.heads.domain?.lookahead).toBe(0);
    });

    test('reads a lookahead within the window overlap', async () => {
      // maxLength 16 leaves windows of 15 residues, so the default overlap is 7.
      writePackage(dir, withDomainHead({ lookahead: 7 }));

      expect((await loadModelPackage(dir)).manifest.heads.domain?.lookahead).toBe(7);
    });

    test('rejects a negative lookahead', async () => {
      writePackage(dir, withDomainHead({ lookahead: -1 }));

      await expect(loadModelPackage(dir)).rejects.toThrow('heads.domain.lookahead: Number must be greater than or equal to 0');
    });

    test('rejects a fractional lookahead', async () => {
      writePackage(dir, withDomainHead({ lookahead: 2.5 }));

      await expect(loadModelPackage(dir)).rejects.toThrow('heads.domain.lookahead: Expected integer, received float');
    });

    test('rejects a lookahead above the default overlap', async () => {
      writePackage(dir, withDomainHead({ lookahead: 8 }));

      await expect(loadModelPackage(dir)).rejects.toThrow(
        'heads.domain.lookahead: is 8 but windows of a long sequence overlap by only 7 residues',
      );
    });

    test('checks the lookahead against windowOverlap', async () => {
      writePackage(dir, withDomainHead({ lookahead: 8 }, { windowOverlap: 10 }));
      expect((await loadModelPackage(dir)).manifest.heads.domain?.lookahead).toBe(8);

      writePackage(dir, withDomainHead({ lookahead: 8 }, { windowOverlap: 3 }));
      await expect(loadModelPackage(dir)).rejects.toThrow('overlap by only 3 residues');
    });
  });

  test('stateSumWidth defaults to dModel', async () => {
    writePackage(dir, { ...makeManifest(), prefixCache: PREFIX_CACHE });
    expect((await loadModelPackage(dir)).manifest.prefixCache?.stateSumWidth).toBe(64);
    writePackage(dir, { ...makeManifest(), prefixCache: { ...PREFIX_CACHE, stateSumWidth: 345 } });
    expect((await loadModelPackage(dir)).manifest.prefixCache?.stateSumWidth).toBe(345);
  });

  test('allows and keeps unknown fields', async () => {
    const manifest = makeManifest();
    writePackage(dir, { ...manifest, cache: { pastKeys: 'past' }, heads: { ...manifest.heads, domains: { output: 'x' } } });
    const pkg = await loadModelPackage(dir);

    expect(pkg.manifest.cache).toEqual({ pastKeys: 'past' });
  });
});

describe('checkGraph', () => {
  const manifest = makeManifest();
  const pkg: ModelPackage = { dir: '/models/fixture', manifest, onnxPath: '/models/fixture/model.onnx', modelId: manifest.modelId };

  function matchingGraph(): GraphInfo {
    return {
      inputs: [
        { name: 'input_ids', type: 'int64', shape: ['batch', 'seq'] },
        { name: 'attention_mask', type: 'int64', shape: ['batch', 'seq'] },
      ],
      outputs: [
        { name: 'localization_logits', type: 'float32', shape: ['batch', 3] },
        { name: 'go_logits', type: 'float32', shape: ['batch', 4] },
        { name: 'lm_logits', type: 'float32', shape: ['batch', 'seq', 25] },
        { name: 'hidden_states', type: 'float32', shape: ['batch', 'seq', 64] },
      ],
    };
  }

  test('accepts a matching graph with extra outputs', () => {
    expect(() => checkGraph(pkg, matchingGraph())).not.toThrow();
  });

  test('names a head output missing from the graph', () => {
    const graph = matchingGraph();
    graph.outputs = graph.outputs.filter((output) => output.name !== 'go_logits');

    expect(() => checkGraph(pkg, graph)).toThrow('heads.go.output: "go_logits" is not an output of the graph');
    expect(() => checkGraph(pkg, graph)).toThrow('does not match /models/fixture/manifest.json');
  });

  test('names an input the manifest does not feed', () => {
    const graph = matchingGraph();
    graph.inputs.push({ name: 'position_ids', type: 'int64', shape: ['batch', 'seq'] });

    expect(() => checkGraph(pkg, graph)).toThrow('the graph needs input "position_ids", which the manifest does not name');
  });

  test('names a renamed input', () => {
    const graph = matchingGraph();
    graph.inputs[1] = { name: 'mask', type: 'int64', shape: ['batch', 'seq'] };

    expect(() => checkGraph(pkg, graph)).toThrow('inputs.attentionMask: "attention_mask" is not an input of the graph');
  });

  test('names a head width that differs from its labels', () => {
    const graph = matchingGraph();
    graph.outputs[0] = { name: 'localization_logits', type: 'float32', shape: ['batch', 10] };

    expect(() => checkGraph(pkg, graph)).toThrow(
      'heads.localization.output: graph output "localization_logits" has 10 columns but the manifest lists 3',
    );
  });

  describe('with a prefix cache', () => {
    const cached: ModelPackage = {
      ...pkg,
      manifest: {
        ...manifest,
        prefixCache: { ...PREFIX_CACHE, stateSumWidth: 345 },
      },
    };

    function cachedGraph(stateColumns: number | string): GraphInfo {
      const graph = matchingGraph();
      graph.inputs.push(
        { name: 'past_key_0', type: 'float32', shape: ['batch', 4, 'past', 16] },
        { name: 'past_value_0', type: 'float32', shape: ['batch', 4, 'past', 16] },
        { name: 'past_state_sum', type: 'float32', shape: ['batch', stateColumns] },
      );
      graph.outputs.push(
        { name: 'present_key_0', type: 'float32', shape: ['batch', 4, 'total', 16] },
        { name: 'present_value_0', type: 'float32', shape: ['batch', 4, 'total', 16] },
        { name: 'state_sum', type: 'float32', shape: ['batch', 'width'] },
      );
      return graph;
    }

    test('accepts a state sum as wide as stateSumWidth', () => {
      expect(() => checkGraph(cached, cachedGraph(345))).not.toThrow();
      expect(() => checkGraph(cached, cachedGraph('width'))).not.toThrow();
    });

    test('names a state sum of another width', () => {
      expect(() => checkGraph(cached, cachedGraph(64))).toThrow(
        'prefixCache.stateSumWidth: graph input "past_state_sum" has 64 columns but the manifest gives 345',
      );
    });
  });

  test('names an input of the wrong type', () => {
    const graph = matchingGraph();
    graph.inputs[0] = { name: 'input_ids', type: 'int32', shape: ['batch', 'seq'] };

    expect(() => checkGraph(pkg, graph)).toThrow('graph input "input_ids" has type int32, expected int64');
  });
});
