import fc from 'fast-check';
import { DEFAULT_WINDOW_OVERLAP, planWindows, windowOverlap, type SequenceWindow } from '../../src/inference/windows';

/** Returns how many windows contain each residue, and how many score it. */
function countPerResidue(windows: readonly SequenceWindow[], length: number): { covered: number[]; scored: number[] } {
  const covered = new Array<number>(length).fill(0);
  const scored = new Array<number>(length).fill(0);
  for (const window of windows) {
    for (let residue = window.start; residue < window.end; residue++) covered[residue] += 1;
    for (let residue = window.scoredStart; residue < window.end; residue++) scored[residue] += 1;
  }
  return { covered, scored };
}

describe('planWindows', () => {
  const max = 511;
  const overlap = 128;

  test.each<[string, number, Array<[number, number, number]>]>([
    ['one residue', 1, [[0, 1, 0]]],
    ['exactly max', max, [[0, 511, 0]]],
    ['max + 1', max + 1, [[0, 511, 0], [1, 512, 511]]],
    ['2 × max', 2 * max, [[0, 511, 0], [383, 894, 511], [511, 1022, 894]]],
    ['2,000 residues', 2000, [[0, 511, 0], [383, 894, 511], [766, 1277, 894], [1149, 1660, 1277], [1489, 2000, 1660]]],
  ])('cuts %s', (_name, length, expected) => {
    const windows = planWindows(length, max, overlap);
    expect(windows.map((window) => [window.start, window.end, window.scoredStart])).toEqual(expected);
  });

  test('cuts without overlap', () => {
    const windows = planWindows(25, 10, 0);
    expect(windows.map((window) => [window.start, window.end, window.scoredStart])).toEqual([
      [0, 10, 0],
      [10, 20, 10],
      [15, 25, 20],
    ]);
  });

  test('covers and scores each residue once', () => {
    const cases = fc.integer({ min: 1, max: 64 }).chain((maxResidues) =>
      fc.record({
        maxResidues: fc.constant(maxResidues),
        overlap: fc.integer({ min: 0, max: maxResidues - 1 }),
        length: fc.integer({ min: 1, max: 20 * maxResidues }),
      }),
    );

    fc.assert(
      fc.property(cases, ({ maxResidues, overlap, length }) => {
        const windows = planWindows(length, maxResidues, overlap);
        const { covered, scored } = countPerResidue(windows, length);

        expect(covered.every((count) => count >= 1)).toBe(true);
        expect(scored.every((count) => count === 1)).toBe(true);
        expect(windows[0].start).toBe(0);
        expect(windows[windows.length - 1].end).toBe(length);
        for (const window of windows) expect(window.end - window.start).toBe(Math.min(length, maxResidues));
        for (let i = 1; i < windows.length; i++) {
          expect(windows[i].start).toBeGreaterThan(windows[i - 1].start);
          expect(windows[i - 1].end - windows[i].start).toBeGreaterThanOrEqual(overlap);
        }
      }),
    );
  });

  test('gives each scored residue the overlap as left context', () => {
    fc.assert(
      fc.property(fc.integer({ min: 512, max: 6000 }), (length) => {
        const windows = planWindows(length, max, overlap);
        for (const window of windows.slice(1)) {
          expect(window.scoredStart - window.start).toBeGreaterThanOrEqual(overlap);
        }
      }),
    );
  });

  test('rejects an invalid length or overlap', () => {
    expect(() => planWindows(0, max, overlap)).toThrow('sequence length 0 is invalid');
    expect(() => planWindows(10, 0, 0)).toThrow('window size 0 is invalid');
    expect(() => planWindows(1000, max, max)).toThrow('window overlap 511 is invalid');
  });
});

describe('windowOverlap', () => {
  test('defaults to 128 residues for the bundled window', () => {
    expect(windowOverlap(511)).toBe(DEFAULT_WINDOW_OVERLAP);
  });

  test('caps the default at half a short window', () => {
    expect(windowOverlap(15)).toBe(7);
    expect(windowOverlap(1)).toBe(0);
  });

  test('uses a configured overlap', () => {
    expect(windowOverlap(511, 0)).toBe(0);
    expect(windowOverlap(511, 510)).toBe(510);
  });

  test('rejects an overlap of a whole window', () => {
    expect(() => windowOverlap(511, 511)).toThrow('expected an integer from 0 to 510');
    expect(() => windowOverlap(511, -1)).toThrow('window overlap -1 is invalid');
    expect(() => windowOverlap(511, 1.5)).toThrow('window overlap 1.5 is invalid');
  });
});
