import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isInboxCandidate, moveWithoutOverwrite, suffixedName, writeFileAtomic } from '../../src/intake/files';

describe('isInboxCandidate', () => {
  test.each([
    ['proteins.fasta', true],
    ['P.FA', true],
    ['x.faa', true],
    ['x.fas', true],
    ['x.txt', true],
    ['x.json', true],
    ['x.fasta.gz', true],
    ['x.fastq', true],
    ['x.fq.gz', true],
    ['x.fna', true],
    ['x.csv', false],
    ['.hidden.fasta', false],
    ['x.fasta.tmp', false],
    ['x.fasta.part', false],
    ['x.fasta.swp', false],
    ['x.fasta~', false],
    ['x.gz', false],
    ['../x.fasta', false],
    ['a/x.fasta', false],
  ])('%s is %s', (name, expected) => {
    expect(isInboxCandidate(name)).toBe(expected);
  });
});

describe('file moves', () => {
  let folder: string;

  beforeEach(() => {
    folder = mkdtempSync(path.join(os.tmpdir(), 'bitnet-intake-files-'));
  });

  afterEach(() => {
    rmSync(folder, { recursive: true, force: true });
  });

  test('suffixedName inserts before extension', () => {
    expect(suffixedName('a.fasta', 0)).toBe('a.fasta');
    expect(suffixedName('a.fasta', 2)).toBe('a-2.fasta');
    expect(suffixedName('a.fasta.json', 1)).toBe('a.fasta-1.json');
    expect(suffixedName('noext', 1)).toBe('noext-1');
  });

  test('writeFileAtomic never overwrites', async () => {
    const first = await writeFileAtomic(folder, 'r.json', 'one');
    const second = await writeFileAtomic(folder, 'r.json', 'two');

    expect(path.basename(first)).toBe('r.json');
    expect(path.basename(second)).toBe('r-1.json');
    expect(readFileSync(first, 'utf8')).toBe('one');
    expect(readFileSync(second, 'utf8')).toBe('two');
    expect(readdirSync(folder).sort()).toEqual(['r-1.json', 'r.json']);
  });

  test('moveWithoutOverwrite keeps existing target', async () => {
    const target = path.join(folder, 'done');
    mkdirSync(target);
    writeFileSync(path.join(target, 'a.fasta'), 'old');
    writeFileSync(path.join(folder, 'a.fasta'), 'new');

    const moved = await moveWithoutOverwrite(path.join(folder, 'a.fasta'), target, 'a.fasta');

    expect(path.basename(moved)).toBe('a-1.fasta');
    expect(readFileSync(path.join(target, 'a.fasta'), 'utf8')).toBe('old');
    expect(readFileSync(moved, 'utf8')).toBe('new');
    expect(readdirSync(folder)).toEqual(['done']);
  });
});
