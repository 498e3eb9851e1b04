// Internal to kernels.cc / kernels_x86.cc: helpers both use, and the AVX2 versions of the hottest kernels
// (kernels_x86.cc), which kernels.cc calls instead of its portable loops when the CPU has AVX2.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CSKERN_X86_AVX2 1
#else
#define CSKERN_X86_AVX2 0
#endif

namespace cskern {
namespace detail {
// v < 0 ? 0 : v > 255 ? 255 : v, written as two unconditional selects (the same result) so that GCC
// (-fno-trapping-math) if-converts the loops that use it and vectorises them
inline double clamp255(double v) {
  const double lo = v < 0 ? 0 : v;
  return lo > 255 ? 255 : lo;
}
// Σ_RGB |Δ| of a YUV difference (media/colour.ts rgbAbsDiff)
inline double rgbAbsDiff(int dY, int dU, int dV) {
  const double yy = KY * dY;
  return std::fabs(yy + RV * dV) + std::fabs(yy - GU * dU - GV * dV) + std::fabs(yy + BU * dU);
}
// out = (float) acc, then (mean) / the MB's clipped pixel area: divideByMbArea() on a Float32Array
void storeMbSums(const double* acc, int w, int h, bool mean, float* out);
// out[i] /= the MB's clipped pixel area, in double, rounded to float (divideByMbArea())
void divideByMbArea(float* out, int w, int h);
// Input columns [colStart[c], colStart[c+1]) fall in MB column c (the mapping of reduceToMacroblocks() is
// monotone, so each is a contiguous run). colStart: cols+1 entries. Returns the longest run.
int mbColumnRuns(const Letterbox& lb, int frameW, int cols, int32_t* colStart);
// The three planes of a w×h YUV420p frame
struct YuvPlanes {
  const uint8_t *y, *u, *v;
  int cw, ch;  // chroma plane size
  YuvPlanes(const uint8_t* yuv, int w, int h)
      : y(yuv), u(yuv + static_cast<size_t>(w) * h), v(u + static_cast<size_t>(w >> 1) * (h >> 1)), cw(w >> 1), ch(h >> 1) {}
};
// letterbox()'s geometry and bilinear tap tables (bilinearTaps()): luma (l…) and chroma (c…), per output
// column (…x…) and row (…y…); i0/i1 source indices, w the weight of i1.
struct LetterboxTaps {
  Letterbox lb;
  std::vector<int32_t> lx0, lx1, cx0, cx1, ly0, ly1, cy0, cy1;
  std::vector<float> lwx, cwx, lwy, cwy;
  LetterboxTaps(int w, int h, int S);
};
}  // namespace detail

#if CSKERN_X86_AVX2
namespace avx2 {
void letterbox(const uint8_t* yuv, int w, int h, int S, bool bgr, float* out);
void halfResRgb(const uint8_t* yuv, int w, int h, float* out);
void reduceToMacroblocks(const float* grad, const Letterbox& lb, int frameW, int frameH, bool mean, float* out);
void frameDiffPerMb(const uint8_t* a, const uint8_t* b, int w, int h, bool rgb, const float* weight, bool mean, float* out);
void planePerMb(const float* plane, int w, int h, bool mean, float* out);
}  // namespace avx2
#endif

}  // namespace cskern
