/**
 * For each label, the indices of the labels among its ancestors in the GO graph. The walk goes
 * through terms that are not labels too, so a labelled grandparent is found through an
 * unlabelled parent. A cycle in `parents` (not valid GO, but possible in a hand-made manifest)
 * ends the walk instead of looping.
 */
export function buildAncestorIndex(
  labels: readonly string[],
  parents: Readonly<Record<string, readonly string[]>>,
): number[][] {
  const indexByLabel = new Map(labels.map((label, index) => [label, index]));

  return labels.map((label, self) => {
    const visited = new Set<string>([label]);
    const stack = [...(parents[label] ?? [])];
    const ancestors: number[] = [];

    while (stack.length > 0) {
      const term = stack.pop()!;
      if (visited.has(term)) continue;
      visited.add(term);

      const index = indexByLabel.get(term);
      if (index !== undefined && index !== self) ancestors.push(index);
      stack.push(...(parents[term] ?? []));
    }
    return ancestors.sort((a, b) => a - b);
  });
}

/**
 * Applies the true-path rule: each term's score is raised to the maximum score of its labelled
 * descendants, so no term scores above any of its ancestors. `ancestors` comes from
 * buildAncestorIndex. Returns new scores and leaves the input unchanged.
 */
export function propagateTruePath(scores: readonly number[], ancestors: ReadonlyArray<readonly number[]>): number[] {
  const propagated = [...scores];
  ancestors.forEach((ancestorIndices, term) => {
    const score = scores[term];
    for (const ancestor of ancestorIndices) {
      if (score > propagated[ancestor]) propagated[ancestor] = score;
    }
  });
  return propagated;
}
