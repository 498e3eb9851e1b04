// Native twins of the TypeScript hot loops; see kernels.h for the exactness contract.
// Written as plain loops over contiguous rows so that GCC/Clang -O3 vectorises the per-pixel arithmetic
// (SSE2 on x86-64, NEON on aarch64); the per-MB accumulations keep the references' sequential float
// rounding, so they stay scalar but run as independent chains per macroblock column.
#include "kernels.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels_simd.h"

// x86-64: each hot function is also compiled for AVX2 and picked at load time (GCC function multi-versioning;
// twice the SIMD width of the SSE2 baseline). No FMA either way (-ffp-contract=off), so both versions round
// identically. Elsewhere (aarch64: NEON is the baseline) a single version.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define CS_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CS_SIMD_CLONES
#endif

namespace cskern {

namespace {
using detail::clamp255;
inline double absd(float v) { return std::fabs(static_cast<double>(v)); }

#if CSKERN_X86_AVX2
bool cpuHasAvx2() {
  static const bool has = (__builtin_cpu_init(), __builtin_cpu_supports("avx2"));
  return has;
}
std::atomic<bool> avx2On{cpuHasAvx2()};
inline bool useAvx2() { return avx2On.load(std::memory_order_relaxed); }
#else
inline bool useAvx2() { return false; }
#endif

// Adds one row of per-pixel terms t[0..w) into per-macroblock-column accumulators o[0..ceil(w/16)),
// each column in x order as the reference does (float accumulators round after every add, as a
// Float32Array store does). Iterating x-within-MB outside and columns inside keeps each column's order
// but makes neighbouring columns independent, so the adds overlap instead of forming one long chain.
template <typename Acc>
inline void accumulateRow(const double* __restrict t, int w, Acc* __restrict o) {
  const int full = w / 16;
  for (int k = 0; k < 16; k++)
    for (int c = 0; c < full; c++) o[c] = static_cast<Acc>(static_cast<double>(o[c]) + t[c * 16 + k]);
  for (int x = full * 16; x < w; x++) o[full] = static_cast<Acc>(static_cast<double>(o[full]) + t[x]);
}
}  // namespace

const char* useSimd(bool enable) {
#if CSKERN_X86_AVX2
  avx2On.store(enable && cpuHasAvx2());
#endif
  return useAvx2() ? "avx2" : "portable";
}

Letterbox letterboxFor(int srcW, int srcH, int S) {
  Letterbox lb{};
  lb.inputSize = S;
  lb.srcW = srcW;
  lb.srcH = srcH;
  lb.scale = std::min(static_cast<double>(S) / srcW, static_cast<double>(S) / srcH);
  lb.newW = std::max(1, std::min(S, static_cast<int>(std::floor(srcW * lb.scale + 1e-9))));
  lb.newH = std::max(1, std::min(S, static_cast<int>(std::floor(srcH * lb.scale + 1e-9))));
  lb.invScaleX = static_cast<double>(srcW) / lb.newW;
  lb.invScaleY = static_cast<double>(srcH) / lb.newH;
  return lb;
}

void bilinearTaps(int dstN, int srcN, double ratio, double offset, int32_t* i0, int32_t* i1, float* w) {
  for (int d = 0; d < dstN; d++) {
    double s = (d + 0.5) * ratio - 0.5 + offset;
    if (s < 0) s = 0;
    if (s > srcN - 1) s = srcN - 1;
    const double f = std::floor(s);
    i0[d] = static_cast<int32_t>(f);
    i1[d] = std::min(static_cast<int32_t>(f) + 1, srcN - 1);
    w[d] = static_cast<float>(s - f);
  }
}

namespace detail {
LetterboxTaps::LetterboxTaps(int w, int h, int S) : lb(letterboxFor(w, h, S)) {
  const int nW = lb.newW, nH = lb.newH, cw = w >> 1, ch = h >> 1;
  const double rx = static_cast<double>(w) / nW, ry = static_cast<double>(h) / nH;
  for (auto* v : {&lx0, &lx1, &cx0, &cx1}) v->resize(nW);
  for (auto* v : {&ly0, &ly1, &cy0, &cy1}) v->resize(nH);
  lwx.resize(nW);
  cwx.resize(nW);
  lwy.resize(nH);
  cwy.resize(nH);
  bilinearTaps(nW, w, rx, 0, lx0.data(), lx1.data(), lwx.data());
  bilinearTaps(nH, h, ry, 0, ly0.data(), ly1.data(), lwy.data());
  // chroma: co-sited horizontally (offset +0.25 in chroma samples), centred vertically (preprocess.ts)
  bilinearTaps(nW, cw, rx / 2, 0.25, cx0.data(), cx1.data(), cwx.data());
  bilinearTaps(nH, ch, ry / 2, 0, cy0.data(), cy1.data(), cwy.data());
}
}  // namespace detail

CS_SIMD_CLONES
void letterbox(const uint8_t* yuv, int w, int h, int S, bool bgr, float* out) {
  if (useAvx2()) return avx2::letterbox(yuv, w, h, S, bgr, out);
  const detail::LetterboxTaps tp(w, h, S);
  const int plane = S * S;
  const detail::YuvPlanes yp(yuv, w, h);
  const int cw = yp.cw;
  const uint8_t *Yp = yp.y, *Up = yp.u, *Vp = yp.v;
  const int nW = tp.lb.newW, nH = tp.lb.newH;
  const auto &li0 = tp.lx0, &li1 = tp.lx1, &ci0 = tp.cx0, &ci1 = tp.cx1, &ly0 = tp.ly0, &ly1 = tp.ly1, &cy0 = tp.cy0, &cy1 = tp.cy1;
  const auto &lw = tp.lwx, &cwx = tp.cwx, &lwy = tp.lwy, &cwy = tp.cwy;
  float* PR = out + (bgr ? 2 * plane : 0);
  float* PG = out + plane;
  float* PB = out + (bgr ? 0 : 2 * plane);
  // Horizontal interpolation of one source row at every output column, kept in doubles: exactly the
  // reference's `top`/`bot` terms, computed once per source row while consecutive output rows share it
  // (two cached rows per plane; chroma rows are shared by about every other output row).
  struct RowCache {
    int idx[2] = {-1, -1};
    std::vector<double> buf[2];
    const uint8_t* plane;
    int stride;
    const int32_t *a0, *a1;
    const float* wx;
    int n;
    // the interpolated row r; `keep` (the other row this output row needs) is not evicted
    const double* get(int r, int keep) {
      for (int i = 0; i < 2; i++)
        if (idx[i] == r) return buf[i].data();
      const int slot = idx[0] == keep ? 1 : 0;
      double* __restrict dst = buf[slot].data();
      const uint8_t* row = plane + static_cast<size_t>(r) * stride;
      for (int x = 0; x < n; x++) {
        const double p0 = row[a0[x]], p1 = row[a1[x]];
        dst[x] = p0 + (p1 - p0) * static_cast<double>(wx[x]);
      }
      idx[slot] = r;
      return dst;
    }
  };
  auto cache = [nW](const uint8_t* plane, int stride, const std::vector<int32_t>& a0, const std::vector<int32_t>& a1, const std::vector<float>& wx) {
    RowCache c;
    c.buf[0].resize(nW);
    c.buf[1].resize(nW);
    c.plane = plane;
    c.stride = stride;
    c.a0 = a0.data();
    c.a1 = a1.data();
    c.wx = wx.data();
    c.n = nW;
    return c;
  };
  RowCache cY = cache(Yp, w, li0, li1, lw), cU = cache(Up, cw, ci0, ci1, cwx), cV = cache(Vp, cw, ci0, ci1, cwx);
  for (int y = 0; y < nH; y++) {
    const double* __restrict yt = cY.get(ly0[y], ly1[y]);
    const double* __restrict yb = cY.get(ly1[y], ly0[y]);
    const double* __restrict ut = cU.get(cy0[y], cy1[y]);
    const double* __restrict ub = cU.get(cy1[y], cy0[y]);
    const double* __restrict vt = cV.get(cy0[y], cy1[y]);
    const double* __restrict vb = cV.get(cy1[y], cy0[y]);
    const double wy = lwy[y], wcy = cwy[y];
    float* __restrict oR = PR + static_cast<size_t>(y) * S;
    float* __restrict oG = PG + static_cast<size_t>(y) * S;
    float* __restrict oB = PB + static_cast<size_t>(y) * S;
    for (int x = 0; x < nW; x++) {  // vectorised: straight-line double arithmetic, if-converted clamps
      const double Y = yt[x] + (yb[x] - yt[x]) * wy;
      const double U = ut[x] + (ub[x] - ut[x]) * wcy - 128;
      const double V = vt[x] + (vb[x] - vt[x]) * wcy - 128;
      const double yy = KY * (Y - 16);
      oR[x] = static_cast<float>(clamp255(yy + RV * V));
      oG[x] = static_cast<float>(clamp255(yy - GU * U - GV * V));
      oB[x] = static_cast<float>(clamp255(yy + BU * U));
    }
    for (int x = nW; x < S; x++) oR[x] = oG[x] = oB[x] = 114.0f;
  }
  for (int c = 0; c < 3; c++) std::fill(out + c * plane + static_cast<size_t>(nH) * S, out + (c + 1) * plane, 114.0f);
}

CS_SIMD_CLONES
void halfResRgb(const uint8_t* src, int w, int h, float* out) {
  if (useAvx2()) return avx2::halfResRgb(src, w, h, out);
  const int rows = mbRows(h), cols = mbCols(w);
  const detail::YuvPlanes yp(src, w, h);
  const int cw = yp.cw, ch = yp.ch;
  const int W = cols * 8, H = rows * 8;
  const size_t plane = static_cast<size_t>(W) * H;
  const uint8_t *Up = yp.u, *Vp = yp.v;
  // (v/255 − 0.5)/0.25: the division by 0.25 is written as ×4, which is exact (a power of two)
  auto norm = [](double v) { return (clamp255(v) / 255 - 0.5) * 4; };
  const int inner = std::min(W, cw);
  std::vector<int32_t> ysum(inner);
  for (int y = 0; y < H; y++) {
    const int sy = y < ch ? y : ch - 1;
    const uint8_t* __restrict l0 = src + static_cast<size_t>(2 * sy) * w;
    const uint8_t* __restrict l1 = l0 + w;
    const uint8_t* __restrict u = Up + static_cast<size_t>(sy) * cw;
    const uint8_t* __restrict v = Vp + static_cast<size_t>(sy) * cw;
    float* __restrict oR = out + static_cast<size_t>(y) * W;
    float* __restrict oG = oR + plane;
    float* __restrict oB = oG + plane;
    int32_t* __restrict ys = ysum.data();
    // the reference sums the 2×2 block in this order, exactly (small integers)
    for (int x = 0; x < inner; x++) ys[x] = l0[2 * x] + l1[2 * x] + l0[2 * x + 1] + l1[2 * x + 1];
    for (int x = 0; x < inner; x++) {  // vectorised
      const double Y = static_cast<double>(ys[x]) * 0.25;
      const double U = static_cast<double>(u[x]) - 128;
      const double V = static_cast<double>(v[x]) - 128;
      const double c = KY * (Y - 16);
      oR[x] = static_cast<float>(norm(c + RV * V));
      oG[x] = static_cast<float>(norm(c - GU * U - GV * V));
      oB[x] = static_cast<float>(norm(c + BU * U));
    }
    for (int x = inner; x < W; x++) {  // right edge replication
      oR[x] = oR[inner - 1];
      oG[x] = oG[inner - 1];
      oB[x] = oB[inner - 1];
    }
  }
}

CS_SIMD_CLONES
void reduceToMacroblocks(const float* grad, const Letterbox& lb, int frameW, int frameH, bool mean, float* out) {
  if (useAvx2()) return avx2::reduceToMacroblocks(grad, lb, frameW, frameH, mean, out);
  const int S = lb.inputSize;
  const size_t plane = static_cast<size_t>(S) * S;
  const int rows = mbRows(frameH), cols = mbCols(frameW);
  std::fill(out, out + static_cast<size_t>(rows) * cols, 0.0f);
  std::vector<int32_t> colStart(cols + 1);
  const int maxW = detail::mbColumnRuns(lb, frameW, cols, colStart.data());
  // Per input row: the saliency of each input pixel, laid out column-of-MB-major with zero padding to the
  // widest MB (t[k·cols + c] = k-th pixel of MB column c, or 0), so that one pass over k adds the k-th term
  // of every MB column at once (vectorised; adding 0.0 to a non-negative float leaves it unchanged).
  // where each t entry comes from: the k-th input column of MB column c, or newW, where s holds a 0
  std::vector<int32_t> from(static_cast<size_t>(maxW) * cols, lb.newW);
  for (int c = 0; c < cols; c++)
    for (int k = 0; k < colStart[c + 1] - colStart[c]; k++) from[static_cast<size_t>(k) * cols + c] = colStart[c] + k;
  std::vector<double> t(static_cast<size_t>(maxW) * cols, 0.0), s(lb.newW + 1, 0.0);
  for (int y = 0; y < lb.newH; y++) {
    const int r = std::min(frameH - 1, static_cast<int>(std::floor((y + 0.5) * lb.invScaleY))) >> 4;
    const float* __restrict g0 = grad + static_cast<size_t>(y) * S;
    const float* __restrict g1 = g0 + plane;
    const float* __restrict g2 = g1 + plane;
    double* __restrict sp = s.data();
    for (int x = 0; x < lb.newW; x++) sp[x] = absd(g0[x]) + absd(g1[x]) + absd(g2[x]);  // vectorised
    double* __restrict tp = t.data();
    for (size_t j = 0; j < t.size(); j++) tp[j] = sp[from[j]];  // branch-free transpose
    float* __restrict o = out + static_cast<size_t>(r) * cols;
    for (int k = 0; k < maxW; k++)  // each column in x order, as the reference's += (vectorised over c)
      for (int c = 0; c < cols; c++) o[c] = static_cast<float>(static_cast<double>(o[c]) + tp[static_cast<size_t>(k) * cols + c]);
  }
  if (mean) detail::divideByMbArea(out, frameW, frameH);
}

CS_SIMD_CLONES
void saliencyToFrame(const float* grad, const Letterbox& lb, int frameW, int frameH, float* out) {
  const int S = lb.inputSize;
  const size_t plane = static_cast<size_t>(S) * S;
  const double k = 1 / (lb.invScaleX * lb.invScaleY);
  std::vector<int32_t> xs(frameW);
  for (int x = 0; x < frameW; x++) xs[x] = std::min(lb.newW - 1, static_cast<int>(std::floor((x + 0.5) / lb.invScaleX)));
  std::vector<double> s(lb.newW);
  int lastYi = -1;
  for (int y = 0; y < frameH; y++) {
    const int yi = std::min(lb.newH - 1, static_cast<int>(std::floor((y + 0.5) / lb.invScaleY)));
    if (yi != lastYi) {  // the input row's saliency, k·Σ|g|, shared by every frame row that pulls from it
      const float* __restrict g0 = grad + static_cast<size_t>(yi) * S;
      const float* __restrict g1 = g0 + plane;
      const float* __restrict g2 = g1 + plane;
      for (int x = 0; x < lb.newW; x++) s[x] = k * (absd(g0[x]) + absd(g1[x]) + absd(g2[x]));
      lastYi = yi;
    }
    float* __restrict o = out + static_cast<size_t>(y) * frameW;
    for (int x = 0; x < frameW; x++) o[x] = static_cast<float>(s[xs[x]]);
  }
}

namespace detail {
void divideByMbArea(float* out, int w, int h) {
  const int rows = mbRows(h), cols = mbCols(w);
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < cols; c++) {
      float& v = out[static_cast<size_t>(r) * cols + c];
      v = static_cast<float>(static_cast<double>(v) / (std::min(16, h - r * 16) * std::min(16, w - c * 16)));
    }
}

void storeMbSums(const double* acc, int w, int h, bool mean, float* out) {
  const size_t n = static_cast<size_t>(mbRows(h)) * mbCols(w);
  for (size_t i = 0; i < n; i++) out[i] = static_cast<float>(acc[i]);
  if (mean) divideByMbArea(out, w, h);
}

int mbColumnRuns(const Letterbox& lb, int frameW, int cols, int32_t* colStart) {
  std::fill(colStart, colStart + cols + 1, lb.newW);
  for (int x = lb.newW - 1; x >= 0; x--) {
    const int c = std::min(frameW - 1, static_cast<int>(std::floor((x + 0.5) * lb.invScaleX))) >> 4;
    colStart[c] = x;
  }
  for (int c = cols - 1; c >= 0; c--) colStart[c] = std::min(colStart[c], colStart[c + 1]);
  int maxW = 0;
  for (int c = 0; c < cols; c++) maxW = std::max(maxW, colStart[c + 1] - colStart[c]);
  return maxW;
}
}  // namespace detail

CS_SIMD_CLONES
void frameDiffPerMb(const uint8_t* a, const uint8_t* b, int w, int h, bool rgb, const float* wt, bool mean, float* out) {
  if (useAvx2()) return avx2::frameDiffPerMb(a, b, w, h, rgb, wt, mean, out);
  const int cols = mbCols(w);
  const int cw = w >> 1;
  const size_t uOff = static_cast<size_t>(w) * h;
  const size_t vOff = uOff + static_cast<size_t>(cw) * (h >> 1);
  std::vector<double> acc(static_cast<size_t>(mbRows(h)) * cols, 0.0), t(w);
  for (int y = 0; y < h; y++) {
    const size_t p0 = static_cast<size_t>(y) * w;
    const size_t c0 = static_cast<size_t>(y >> 1) * cw;
    double* __restrict tp = t.data();
    for (int cx = 0; cx < cw; cx++) {  // two luma pixels share one chroma sample
      const size_t ci = c0 + cx;
      const int dU = static_cast<int>(a[uOff + ci]) - b[uOff + ci];
      const int dV = static_cast<int>(a[vOff + ci]) - b[vOff + ci];
      for (int j = 0; j < 2; j++) {
        const size_t p = p0 + 2 * cx + j;
        const int dY = static_cast<int>(a[p]) - b[p];
        const double d = rgb ? detail::rgbAbsDiff(dY, dU, dV) : std::abs(dY) + std::abs(dU) + std::abs(dV);
        tp[2 * cx + j] = wt ? static_cast<double>(wt[p]) * d : d;
      }
    }
    accumulateRow(tp, w, acc.data() + static_cast<size_t>(y >> 4) * cols);
  }
  detail::storeMbSums(acc.data(), w, h, mean, out);
}

CS_SIMD_CLONES
void planePerMb(const float* plane, int w, int h, bool mean, float* out) {
  if (useAvx2()) return avx2::planePerMb(plane, w, h, mean, out);
  const int cols = mbCols(w);
  std::vector<double> acc(static_cast<size_t>(mbRows(h)) * cols, 0.0), t(w);
  for (int y = 0; y < h; y++) {
    const float* __restrict row = plane + static_cast<size_t>(y) * w;
    for (int x = 0; x < w; x++) t[x] = row[x];
    accumulateRow(t.data(), w, acc.data() + static_cast<size_t>(y >> 4) * cols);
  }
  detail::storeMbSums(acc.data(), w, h, mean, out);
}

namespace {
// 3×3 min (erode) or max (dilate), cells outside the grid ignored: a 1×3 pass along rows, then 3×1
// along columns (min/max are exact, so the separable form equals the 3×3 window). tmp: rows·cols.
template <bool IsMin>
void morph(const uint8_t* __restrict m, int rows, int cols, uint8_t* __restrict tmp, uint8_t* __restrict out) {
  auto op = [](uint8_t a, uint8_t b) -> uint8_t { return IsMin ? (a < b ? a : b) : (a > b ? a : b); };
  for (int r = 0; r < rows; r++) {
    const uint8_t* s = m + static_cast<size_t>(r) * cols;
    uint8_t* t = tmp + static_cast<size_t>(r) * cols;
    if (cols == 1) { t[0] = s[0]; continue; }
    t[0] = op(s[0], s[1]);
    for (int c = 1; c < cols - 1; c++) t[c] = op(op(s[c - 1], s[c]), s[c + 1]);
    t[cols - 1] = op(s[cols - 2], s[cols - 1]);
  }
  for (int r = 0; r < rows; r++) {
    const uint8_t* up = tmp + static_cast<size_t>(r > 0 ? r - 1 : r) * cols;
    const uint8_t* mid = tmp + static_cast<size_t>(r) * cols;
    const uint8_t* dn = tmp + static_cast<size_t>(r < rows - 1 ? r + 1 : r) * cols;
    uint8_t* o = out + static_cast<size_t>(r) * cols;
    for (int c = 0; c < cols; c++) o[c] = op(op(up[c], mid[c]), dn[c]);
  }
}
}  // namespace

void importanceMask(const float* p, int rows, int cols, double threshold, bool smooth, uint8_t* out, uint8_t* scratch) {
  const size_t n = static_cast<size_t>(rows) * cols;
  uint8_t* a = smooth ? scratch : out;
  for (size_t i = 0; i < n; i++) a[i] = static_cast<double>(p[i]) > threshold ? 1 : 0;
  if (!smooth || n == 0) return;
  uint8_t* b = scratch + n;
  uint8_t* t = scratch + 2 * n;
  morph<true>(a, rows, cols, t, b);    // opening: erode,
  morph<false>(b, rows, cols, t, a);   //          dilate
  morph<false>(a, rows, cols, t, b);   // closing: dilate,
  morph<true>(b, rows, cols, t, out);  //          erode
}

}  // namespace cskern
