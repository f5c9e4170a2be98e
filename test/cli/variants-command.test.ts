import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { UBIQUITIN_HUMAN } from '../support/proteins';

const ROOT = path.join(__dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const SMOKE_MODEL_DIR = path.join(ROOT, 'test', 'fixtures', 'model-smoke');

interface VariantsReply {
  status: string;
  variants: Array<{ variant: string; llr: number; prediction?: unknown }>;
  stats: { prefixCache: boolean; modelRuns: number; computedPositions: number; reusedPositions: number };
}

/** Runs the compiled command line (`npm test` builds it first) on the smoke-test model. */
function variants(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [CLI, 'variants', '--model', SMOKE_MODEL_DIR, '--sequence', UBIQUITIN_HUMAN, '--variant', 'K48R', '--variant', 'G76V', ...args], {
    encoding: 'utf8',
    env: { ...process.env, BITNET_EDGE_LOG_LEVEL: 'error' },
    timeout: 60_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('bitnet-edge variants', () => {
  test('table with stats line', () => {
    const { status, stdout, stderr } = variants();

    expect(status).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toBe('variant\tllr\tlogLikelihood');
    expect(lines.slice(1).map((line) => line.split('\t')[0])).toEqual(['K48R', 'G76V']);
    // LLRs only: each variant reuses the wild type up to its residue (token r for residue r, after <bos>).
    expect(stderr).toMatch(/2 variants in \d+ ms, \d+ model runs, prefix cache on, 124 of \d+ token positions reused/);
  });

  test('JSON without predictions', () => {
    const { status, stdout } = variants('--json', '--no-predictions');
    const reply = JSON.parse(stdout) as VariantsReply;

    expect(status).toBe(0);
    expect(reply.variants.map((variant) => variant.prediction)).toEqual([undefined, undefined]);
    expect(reply.stats.reusedPositions).toBe(48 + 76);
  });

  test('JSON with predictions', () => {
    const { status, stdout } = variants('--json');
    const reply = JSON.parse(stdout) as VariantsReply;
    const llrOnly = JSON.parse(variants('--json', '--no-predictions').stdout) as VariantsReply;

    expect(status).toBe(0);
    expect(reply.variants.every((variant) => typeof variant.prediction === 'object')).toBe(true);
    // Boundaries every 16 residues after <bos>: tokens 17, 33, 49, 65.
    expect(reply.stats.reusedPositions).toBe(33 + 65);
    reply.variants.forEach((variant, index) => expect(Math.abs(variant.llr - llrOnly.variants[index].llr)).toBeLessThan(1e-4));
  });

  test('prefix cache off', () => {
    const { status, stderr } = variants('--no-prefix-cache');

    expect(status).toBe(0);
    expect(stderr).toMatch(/2 variants in \d+ ms, \d+ model runs, prefix cache off/);
  });
});
