/**
 * RoPE re-rotation of cached keys. A key cached at position p holds R(p)·k; rotations compose, so moving it to
 * position p + δ is one more rotation R(δ) (same rotate-half layout as the model: dims i and i + hd/2 form a
 * pair turned by δ·θ^(−2i/hd)). Angles in float64, like the exported graphs, so the result matches a key
 * computed fresh at the new position to float32 rounding.
 */
export function ropeInvFreq(headDim: number, theta: number): Float64Array {
  const half = headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = Math.pow(theta, (-2 * i) / headDim);
  return inv;
}

/**
 * Rotate, in place, keys [T, heads, headDim] (row-major, starting at float offset `off`) by the position delta
 * `delta` (the same for all T tokens: a chunk moved as a whole).
 */
export function rerotate(k: Float32Array, off: number, T: number, heads: number, headDim: number, delta: number, inv: Float64Array): void {
  if (delta === 0) return;
  const half = headDim / 2;
  const cos = new Float64Array(half);
  const sin = new Float64Array(half);
  for (let i = 0; i < half; i++) {
    const a = delta * inv[i];
    cos[i] = Math.cos(a);
    sin[i] = Math.sin(a);
  }
  for (let r = 0; r < T * heads; r++) {
    const base = off + r * headDim;
    for (let i = 0; i < half; i++) {
      const x1 = k[base + i];
      const x2 = k[base + i + half];
      k[base + i] = x1 * cos[i] - x2 * sin[i];
      k[base + i + half] = x1 * sin[i] + x2 * cos[i];
    }
  }
}
