// camstream per-pixel hot loops (pure C++, no Node-API): the native twins of the TypeScript references.
//
// Exactness contract: every function performs the same floating-point operations, in the same order
// and precision, as its TypeScript reference (JS numbers are IEEE doubles; Float32Array stores round to
// float), so the outputs are bit-identical. Hence doubles inside, floats at the stores, and the build
// uses -ffp-contract=off (no fused multiply-add, which would change rounding on aarch64/AVX2 targets).
// Used by the encoder addon (encoder/native) and as the CPU twins of native-cuda/. The TypeScript
// references: detector/preprocess.ts, cheapmodel/model.ts, server/dnngrad.ts, media/mb.ts, cheapmodel/qpmap.ts.
#pragma once
#include <cstdint>

namespace cskern {

// ---- geometry shared with the TS Letterbox ------------------------------------------------------
struct Letterbox {
  int inputSize, srcW, srcH, newW, newH;
  double scale, invScaleX, invScaleY;
};
// As letterboxFor(): r = min(S/w, S/h), new size = floor(w·r) clamped to [1, S].
Letterbox letterboxFor(int srcW, int srcH, int inputSize);

// Bilinear tap table of one axis (taps() in preprocess.ts): i0/i1 source indices, w weight of i1.
void bilinearTaps(int dstN, int srcN, double ratio, double offset, int32_t* i0, int32_t* i1, float* w);

// YUV420p (w×h, even) → letterboxed CHW float [3,S,S], values 0–255, BT.601 limited range, bilinear with
// half-pixel centres on the Y/U/V planes (chroma "left" siting), pad 114. bgr: plane 0 is B (YOLOX) else R.
void letterbox(const uint8_t* yuv, int w, int h, int S, bool bgr, float* out);

// YUV420p → half-resolution normalised RGB CHW, (rows·8)×(cols·8), edge-replicated (halfResRgb()).
void halfResRgb(const uint8_t* yuv, int w, int h, float* out);

// Input gradient [3,S,S] → per-MB saliency of the original frame (reduceToMacroblocks()); mean divides by
// the MB's clipped pixel area. out: ceil(frameH/16)·ceil(frameW/16) floats (overwritten).
void reduceToMacroblocks(const float* grad, const Letterbox& lb, int frameW, int frameH, bool mean, float* out);

// Input gradient → per-pixel saliency density in original-frame coordinates (saliencyToFrame()).
void saliencyToFrame(const float* grad, const Letterbox& lb, int frameW, int frameH, float* out);

// Per-MB Σ weight·d between two YUV420p frames (media/mb.ts frameDiffPerMb()), d = Σ_RGB |Δ| after BT.601
// (rgb: OneAdapt's InputGrad for AccGrad) or |ΔY|+|ΔU|+|ΔV| (AccMPEG's labels); weight may be null; summed
// in double, stored as float, then (mean) divided by the MB's pixel area.
void frameDiffPerMb(const uint8_t* a, const uint8_t* b, int w, int h, bool rgb, const float* weight, bool mean, float* out);

// Per-MB sum (or mean) of a w×h float plane (planePerMb(): the labelling CLI's saliency sums).
void planePerMb(const float* plane, int w, int h, bool mean, float* out);

// BT.601 limited range (media/colour.ts): one set of constants for every kernel
constexpr double KY = 1.164383, RV = 1.596027, GU = 0.391762, GV = 0.812968, BU = 2.017232;

// AccMPEG's mask: p > threshold, then (if smooth) 3×3 opening then closing, outside = neutral
// (importanceMask()). out: rows·cols bytes of 0/1. scratch: 3·rows·cols bytes.
void importanceMask(const float* p, int rows, int cols, double threshold, bool smooth, uint8_t* out, uint8_t* scratch);

// Which loops the kernels above run: on x86-64 CPUs with AVX2, hand-vectorised versions of letterbox,
// halfResRgb, reduceToMacroblocks, frameDiffPerMb and planePerMb (kernels_x86.cc), else the portable loops
// (auto-vectorised for the baseline ISA: SSE2, or NEON on aarch64). Both are bit-identical to the
// references. useSimd(false) forces the portable loops (the tests check both), useSimd(true) restores the
// CPU's best; returns the path now in use: "avx2" or "portable".
const char* useSimd(bool enable);

inline int mbRows(int h) { return (h + 15) / 16; }
inline int mbCols(int w) { return (w + 15) / 16; }

}  // namespace cskern
