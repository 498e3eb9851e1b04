/**
 * The project's one YUV→RGB conversion: BT.601 limited range ("TV" range: Y 16–235, C 16–240), what
 * ffmpeg/x264 produce for yuv420p by default. Used by the detector's preprocessing (BGR 0–255), the cheap
 * model's input and OneAdapt's InputGrad (RGB error). Functions are tiny so V8 inlines them in pixel loops.
 */
export const KY = 1.164383;
export const RV = 1.596027;
export const GU = 0.391762;
export const GV = 0.812968;
export const BU = 2.017232;

const clamp = (v: number): number => (v < 0 ? 0 : v > 255 ? 255 : v);

/**
 * One pixel: luma Y (0–255) and chroma U, V (0–255, centred at 128) → R, G, B clamped to 0–255,
 * written to out[0], out[1], out[2].
 */
export function yuvToRgb(Y: number, U: number, V: number, out: Float64Array): void {
  const y = KY * (Y - 16);
  const u = U - 128;
  const v = V - 128;
  out[0] = clamp(y + RV * v);
  out[1] = clamp(y - GU * u - GV * v);
  out[2] = clamp(y + BU * u);
}

/**
 * Σ over R, G, B of |Δ| for a YUV difference (dY, dU, dV). The conversion is linear up to clamping, so
 * RGB differences follow from YUV ones without converting either frame.
 */
export function rgbAbsDiff(dY: number, dU: number, dV: number): number {
  const y = KY * dY;
  return Math.abs(y + RV * dV) + Math.abs(y - GU * dU - GV * dV) + Math.abs(y + BU * dU);
}
