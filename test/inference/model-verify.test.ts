import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ReferenceFile } from '../../src/inference/reference';
import { makeTempDir } from './fixtures';

// The command runs from dist/, so `npm run build` must come first (npm test does it).
const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
const SMOKE_MODEL_DIR = path.join(__dirname, '..', 'fixtures', 'model-smoke');

function verify(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [CLI, 'model', 'verify', '--model', SMOKE_MODEL_DIR, ...args], {
    encoding: 'utf8',
    env: { ...process.env, BITNET_EDGE_MODEL_INTRA_OP_THREADS: '1' },
    timeout: 60_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Returns the one-pass and prefix-split differences printed for an output. */
function differencesOf(stdout: string, output: string): [number, number] {
  const line = stdout.split('\n').find((candidate) => candidate.startsWith(`${output} `));
  if (!line) throw new Error(`no line for ${output} in:\n${stdout}`);
  const [, onePass, split] = line.trim().split(/\s+/);
  return [Number(onePass), Number(split)];
}

describe('bitnet-edge model verify', () => {
  let dir: string;
  let reference: ReferenceFile;

  beforeAll(() => {
    dir = makeTempDir('bitnet-verify-');
    reference = JSON.parse(readFileSync(path.join(SMOKE_MODEL_DIR, 'reference.json'), 'utf8')) as ReferenceFile;
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  test('smoke model matches its reference', () => {
    const result = verify();

    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toContain(`${reference.sequences.length} sequences`);
    for (const output of Object.keys(reference.sequences[0].outputs)) {
      const [onePass, split] = differencesOf(result.stdout, output);
      expect(onePass).toBeLessThan(0.05);
      expect(split).toBeLessThan(0.05);
    }
    expect(result.stdout).toContain('ok: every difference is within 0.05');
  });

  test('corrupted reference value is reported', () => {
    const corrupted = structuredClone(reference);
    const lmRows = corrupted.sequences[3].outputs.lm_logits as number[][];
    lmRows[5][7] += 0.5;
    const file = path.join(dir, 'corrupted.json');
    writeFileSync(file, JSON.stringify(corrupted));

    const result = verify('--reference', file);

    expect(result.status).toBe(1);
    const [onePass, split] = differencesOf(result.stdout, 'lm_logits');
    expect(onePass).toBeGreaterThan(0.45);
    expect(split).toBeGreaterThan(0.45);
    expect(differencesOf(result.stdout, 'go_logits')[0]).toBeLessThan(0.05);
    expect(result.stdout).toContain('FAILED: over 0.05: lm_logits (one pass, prefix split)\n');
  });

  test('tolerance flag sets the limit', () => {
    const result = verify('--tolerance', '0.0000001');

    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(/FAILED: over 1e-7: localization_logits \(one pass, prefix split\); go_logits/);
  });

  test('reference of another shape is rejected', () => {
    const truncated = structuredClone(reference);
    const go = truncated.sequences[0].outputs.go_logits as number[];
    truncated.sequences[0].outputs.go_logits = go.slice(1);
    const file = path.join(dir, 'truncated.json');
    writeFileSync(file, JSON.stringify(truncated));

    const result = verify('--reference', file);

    expect(result.status).toBe(1);
    expect(result.stderr).toContain('output "go_logits" has shape [1, 32]');
  });

  test('missing reference file names the file', () => {
    const result = verify('--reference', path.join(dir, 'absent.json'));

    expect(result.status).toBe(1);
    expect(result.stderr).toContain('cannot read the reference file');
    expect(result.stderr).toContain('absent.json');
  });
});
