import { z } from 'zod';
import type { OutputTensor } from './protocol';

/**
 * Schema of reference.json, written by training/export.py: token ids of some sequences and the
 * PyTorch outputs of the frozen model on each, run alone. A per-sequence head output is a vector,
 * a per-position output is [positions, width] and may hold only the first `positions` positions.
 */
export const referenceSchema = z.object({
  formatVersion: z.literal(1),
  torchVersion: z.string().optional(),
  positions: z.number().int().min(1).nullable(),
  sequences: z
    .array(
      z.object({
        accession: z.string().nullable().optional(),
        inputIds: z.array(z.number().int().min(0)).min(1),
        outputs: z.record(z.string(), z.union([z.array(z.number()), z.array(z.array(z.number()))])),
      }),
    )
    .min(1),
});

export type ReferenceFile = z.infer<typeof referenceSchema>;
export type ReferenceOutput = ReferenceFile['sequences'][number]['outputs'][string];

/**
 * Returns the largest absolute difference between a reference output and the model's output of
 * one run with batch size 1. A NaN in either counts as an infinite difference. Throws when the
 * shapes differ: a vector against [1, width], or rows against [1, seq, width] with at most seq rows.
 */
export function maxAbsDifference(reference: ReferenceOutput, actual: OutputTensor, name: string): number {
  const perPosition = reference.length > 0 && Array.isArray(reference[0]);
  const rows = perPosition ? (reference as number[][]) : [reference as number[]];
  const expectedRank = perPosition ? 3 : 2;
  const width = rows[0]?.length ?? 0;
  const rowCount = perPosition ? actual.dims[1] : 1;

  const shapeFits =
    actual.dims.length === expectedRank &&
    actual.dims[0] === 1 &&
    actual.dims[expectedRank - 1] === width &&
    rows.length <= rowCount &&
    rows.every((row) => row.length === width);
  if (!shapeFits) {
    const referenceShape = perPosition ? `[${rows.length}, ${width}]` : `[${width}]`;
    throw new Error(`output "${name}" has shape [${actual.dims.join(', ')}], which does not fit the reference's ${referenceShape}`);
  }

  let max = 0;
  rows.forEach((row, rowIndex) => {
    row.forEach((expected, column) => {
      const difference = Math.abs(actual.data[rowIndex * width + column] - expected);
      max = Number.isNaN(difference) ? Infinity : Math.max(max, difference);
    });
  });
  return max;
}

/**
 * Joins the per-position outputs of two consecutive runs (a prefix, then the rest fed after its
 * past) into the output of one [1, seq1 + seq2, width] run.
 */
export function concatPositions(first: OutputTensor, second: OutputTensor): OutputTensor {
  if (first.dims.length !== 3 || second.dims.length !== 3 || first.dims[2] !== second.dims[2]) {
    throw new Error(`cannot join outputs of shapes [${first.dims.join(', ')}] and [${second.dims.join(', ')}] by position`);
  }
  const data = new Float32Array(first.data.length + second.data.length);
  data.set(first.data, 0);
  data.set(second.data, first.data.length);
  return { dims: [1, first.dims[1] + second.dims[1], first.dims[2]], data };
}
