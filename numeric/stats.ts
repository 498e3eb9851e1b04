/** Small statistics helpers shared by benches and tests. */

/** Median (the upper one for an even count); does not modify its input. NaN for an empty list. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  return [...xs].sort((a, b) => a - b)[xs.length >> 1];
}
