import type { DomainSpan } from '../contracts/prediction';
import type { DomainHead } from './manifest';

/**
 * Writes the softmax of each row of `logits` ([rows, width], row-major, starting at `offset`)
 * into `target` from `targetOffset`. The row maximum is subtracted first, so exp never overflows.
 */
export function softmaxRows(
  logits: ArrayLike<number>,
  offset: number,
  rows: number,
  width: number,
  target: Float64Array,
  targetOffset: number,
): void {
  for (let row = 0; row < rows; row++) {
    const from = offset + row * width;
    let max = -Infinity;
    for (let column = 0; column < width; column++) max = Math.max(max, logits[from + column]);

    let sum = 0;
    for (let column = 0; column < width; column++) sum += Math.exp(logits[from + column] - max);
    const to = targetOffset + row * width;
    for (let column = 0; column < width; column++) target[to + column] = Math.exp(logits[from + column] - max) / sum;
  }
}

/**
 * Returns the domain class probabilities per residue from the domain head's rows per residue
 * position, the same way as `shift_domain_rows` in training/evaluate.py. `rows` is [length,
 * width], row-major, row r from the head at residue r. The head's output at residue j +
 * `lookahead` classifies residue j, so residue j takes row min(j + lookahead, length - 1), and
 * the last `lookahead` residues all take the last row. Lookahead 0 returns `rows` itself.
 */
export function shiftDomainRows(rows: Float64Array, length: number, width: number, lookahead: number): Float64Array {
  if (!Number.isInteger(lookahead) || lookahead < 0) {
    throw new RangeError(`domain lookahead ${lookahead} is invalid: expected an integer of 0 or more`);
  }
  if (rows.length !== length * width) {
    throw new RangeError(`expected ${length} rows of ${width} domain probabilities, got ${rows.length} values`);
  }
  if (lookahead === 0) return rows;

  const shifted = new Float64Array(rows.length);
  for (let residue = 0; residue < length; residue++) {
    const source = Math.min(residue + lookahead, length - 1);
    shifted.set(rows.subarray(source * width, (source + 1) * width), residue * width);
  }
  return shifted;
}

/**
 * Decodes the domain head's per-residue class probabilities into spans, the same way as
 * `decode_spans` in training/evaluate.py. `probabilities` is [length, 1 + families], row-major,
 * row j for residue j (after shiftDomainRows), column 0 "no domain" and column 1 + i family i.
 *
 * For each family, the residues whose probability reaches the family's threshold form runs. Two
 * runs merge when at most `maxGap` residues lie between them, and a run shorter than `minLength`
 * residues is dropped. A span's score is the mean family probability over all its residues,
 * those below the threshold inside it included. Coordinates are 1-based and inclusive. Spans are
 * sorted by start, then by family order.
 */
export function decodeDomainSpans(probabilities: ArrayLike<number>, length: number, head: DomainHead): DomainSpan[] {
  const width = head.labels.length + 1;
  if (probabilities.length !== length * width) {
    throw new RangeError(`expected ${length} rows of ${width} domain probabilities, got ${probabilities.length} values`);
  }

  const spans: Array<DomainSpan & { familyIndex: number }> = [];
  head.labels.forEach((family, familyIndex) => {
    const column = familyIndex + 1;
    const threshold = head.thresholds[familyIndex];

    for (const [begin, end] of familyRuns(probabilities, length, width, column, threshold, head.maxGap)) {
      if (end - begin + 1 < head.minLength) continue;

      let sum = 0;
      for (let residue = begin; residue <= end; residue++) sum += probabilities[residue * width + column];
      spans.push({
        family,
        accession: head.accessions[familyIndex],
        description: head.descriptions[familyIndex],
        start: begin + 1,
        end: end + 1,
        score: sum / (end - begin + 1),
        familyIndex,
      });
    }
  });

  spans.sort((a, b) => a.start - b.start || a.familyIndex - b.familyIndex);
  return spans.map(({ familyIndex: _familyIndex, ...span }) => span);
}

/** Returns the runs of one family as [first, last] residue pairs, 0-based and inclusive, gaps of up to maxGap merged. */
function familyRuns(
  probabilities: ArrayLike<number>,
  length: number,
  width: number,
  column: number,
  threshold: number,
  maxGap: number,
): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  let start = -1;
  let previous = -1;

  for (let residue = 0; residue < length; residue++) {
    if (!(probabilities[residue * width + column] >= threshold)) continue;
    if (start < 0) {
      start = residue;
    } else if (residue - previous - 1 > maxGap) {
      runs.push([start, previous]);
      start = residue;
    }
    previous = residue;
  }
  if (start >= 0) runs.push([start, previous]);
  return runs;
}
