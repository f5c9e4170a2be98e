import { decodeDomainSpans, shiftDomainRows, softmaxRows } from '../../src/inference/domains';
import type { DomainHead } from '../../src/inference/manifest';

const HEAD: DomainHead = {
  output: 'domain_logits',
  type: 'residue_spans',
  labels: ['Kinase', 'RRM'],
  accessions: ['PF00001.1', 'PF00002.1'],
  descriptions: ['kinase domain', 'RNA recognition motif'],
  thresholds: [0.5, 0.3],
  minLength: 3,
  maxGap: 2,
  lookahead: 0,
};

/**
 * Builds [length, 3] probabilities: every residue is "no domain" (0.9) except the listed ones,
 * which get `probability` for the family (1-based column) and the rest for "no domain".
 */
function probabilities(length: number, marks: Array<{ family: 1 | 2; residues: number[]; probability?: number }>): number[] {
  const rows = Array.from({ length }, () => [0.9, 0.05, 0.05]);
  for (const { family, residues, probability = 0.8 } of marks) {
    for (const residue of residues) {
      rows[residue][family] = probability;
      rows[residue][0] = 1 - rows[residue][1] - rows[residue][2];
    }
  }
  return rows.flat();
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

describe('decodeDomainSpans', () => {
  test('run gives one span in 1-based coordinates', () => {
    const spans = decodeDomainSpans(probabilities(20, [{ family: 1, residues: range(5, 9) }]), 20, HEAD);

    expect(spans).toHaveLength(1);
    expect(spans[0]).toMatchObject({ family: 'Kinase', accession: 'PF00001.1', description: 'kinase domain', start: 6, end: 10 });
    expect(spans[0].score).toBeCloseTo(0.8, 10);
  });

  test('gap of exactly maxGap merges', () => {
    // Residues 2-4 and 7-9 leave 5 and 6 out: a gap of 2 = maxGap.
    const values = probabilities(12, [{ family: 1, residues: [...range(2, 4), ...range(7, 9)] }]);
    const spans = decodeDomainSpans(values, 12, HEAD);

    expect(spans.map((span) => [span.start, span.end])).toEqual([[3, 10]]);
    // The mean covers the gap residues too: six at 0.8 and two at 0.05.
    expect(spans[0].score).toBeCloseTo((6 * 0.8 + 2 * 0.05) / 8, 10);
  });

  test('gap of maxGap + 1 splits', () => {
    const values = probabilities(14, [{ family: 1, residues: [...range(2, 4), ...range(8, 10)] }]);
    const spans = decodeDomainSpans(values, 14, HEAD);

    expect(spans.map((span) => [span.start, span.end])).toEqual([
      [3, 5],
      [9, 11],
    ]);
  });

  test('runs at both sequence ends are kept', () => {
    const values = probabilities(10, [{ family: 1, residues: [0, 1, 2, 7, 8, 9] }]);
    const spans = decodeDomainSpans(values, 10, HEAD);

    expect(spans.map((span) => [span.start, span.end])).toEqual([
      [1, 3],
      [8, 10],
    ]);
  });

  test('minLength boundary keeps minLength, drops one less', () => {
    const values = probabilities(12, [{ family: 1, residues: [...range(0, 2), ...range(8, 9)] }]);
    const spans = decodeDomainSpans(values, 12, HEAD);

    expect(spans.map((span) => [span.start, span.end])).toEqual([[1, 3]]);
  });

  test('threshold is inclusive and per family', () => {
    // 0.3 reaches RRM's threshold, 0.49 stays below Kinase's 0.5.
    const values = probabilities(12, [
      { family: 2, residues: range(0, 3), probability: 0.3 },
      { family: 1, residues: range(6, 10), probability: 0.49 },
    ]);
    const spans = decodeDomainSpans(values, 12, HEAD);

    expect(spans.map((span) => span.family)).toEqual(['RRM']);
    expect(spans[0]).toMatchObject({ start: 1, end: 4 });
  });

  test('several families sorted by start then family', () => {
    const values = probabilities(30, [
      { family: 2, residues: range(10, 14), probability: 0.4 },
      { family: 1, residues: range(10, 14), probability: 0.55 },
      { family: 1, residues: range(20, 25) },
      { family: 2, residues: range(0, 4), probability: 0.4 },
    ]);
    const spans = decodeDomainSpans(values, 30, HEAD);

    expect(spans.map((span) => `${span.family}:${span.start}-${span.end}`)).toEqual([
      'RRM:1-5',
      'Kinase:11-15',
      'RRM:11-15',
      'Kinase:21-26',
    ]);
  });

  test('no residue over threshold gives no spans', () => {
    expect(decodeDomainSpans(probabilities(15, []), 15, HEAD)).toEqual([]);
  });

  test('wrong number of values throws', () => {
    expect(() => decodeDomainSpans(new Float64Array(10), 4, HEAD)).toThrow(/expected 4 rows of 3/);
  });
});

describe('shiftDomainRows', () => {
  /** Builds [length, 2] rows whose first column is the row index, so a shifted row names its source. */
  function indexedRows(length: number): Float64Array {
    return Float64Array.from({ length: length * 2 }, (_, i) => (i % 2 === 0 ? i / 2 : -1));
  }

  function sources(rows: Float64Array): number[] {
    return Array.from({ length: rows.length / 2 }, (_, residue) => rows[residue * 2]);
  }

  test('residue j takes row j + lookahead', () => {
    const shifted = shiftDomainRows(indexedRows(10), 10, 2, 3);

    expect(sources(shifted).slice(0, 7)).toEqual([3, 4, 5, 6, 7, 8, 9]);
  });

  test('last lookahead residues take the last row', () => {
    const shifted = shiftDomainRows(indexedRows(10), 10, 2, 3);

    expect(sources(shifted).slice(7)).toEqual([9, 9, 9]);
  });

  test('lookahead beyond the sequence gives every residue the last row', () => {
    expect(sources(shiftDomainRows(indexedRows(4), 4, 2, 32))).toEqual([3, 3, 3, 3]);
  });

  test('lookahead 0 keeps the rows', () => {
    const rows = indexedRows(5);

    expect(shiftDomainRows(rows, 5, 2, 0)).toBe(rows);
  });

  test('whole rows move together', () => {
    const rows = Float64Array.from([0.9, 0.1, 0.2, 0.8, 0.3, 0.7]);

    expect(Array.from(shiftDomainRows(rows, 3, 2, 1))).toEqual([0.2, 0.8, 0.3, 0.7, 0.3, 0.7]);
  });

  test('invalid lookahead throws', () => {
    expect(() => shiftDomainRows(indexedRows(4), 4, 2, -1)).toThrow(/lookahead -1 is invalid/);
    expect(() => shiftDomainRows(indexedRows(4), 4, 2, 1.5)).toThrow(/lookahead 1.5 is invalid/);
  });

  test('wrong number of values throws', () => {
    expect(() => shiftDomainRows(new Float64Array(7), 4, 2, 1)).toThrow(/expected 4 rows of 2/);
  });

  test('shifted run decodes to the classified residues', () => {
    // The head classifies a domain of residues 5-9 (0-based) when it reads residues 9-13, 4 further on.
    const rows = Float64Array.from(probabilities(20, [{ family: 1, residues: range(9, 13) }]));
    const spans = decodeDomainSpans(shiftDomainRows(rows, 20, 3, 4), 20, HEAD);

    expect(spans.map((span) => [span.start, span.end])).toEqual([[6, 10]]);
  });
});

describe('softmaxRows', () => {
  test('rows sum to 1 and keep order', () => {
    const logits = [1, 2, 3, 1000, 1000, -1000];
    const target = new Float64Array(6);
    softmaxRows(logits, 0, 2, 3, target, 0);

    expect(target[0] + target[1] + target[2]).toBeCloseTo(1, 12);
    expect(target[2]).toBeGreaterThan(target[1]);
    expect(target[3]).toBeCloseTo(0.5, 12);
    expect(target[5]).toBe(0);
  });
});
