// x86-64 AVX2 versions of the five hottest kernels (kernels.cc picks them at run time when the CPU has
// AVX2; elsewhere, e.g. aarch64/NEON on a Jetson, this file compiles to nothing and kernels.cc's portable
// loops run). Same exactness contract as kernels.h: the same IEEE operations in the same order and
// precision as the TypeScript references, 4 doubles per instruction instead of 1. GCC's auto-vectoriser
// gave up on these loops (clamps became branches, bilinear taps and per-MB sums became scalar), hence
// intrinsics; no FMA (never enabled here, and -ffp-contract=off), so every product is rounded on its own.
//
// Standard headers come before `#pragma GCC target`, so the library code instantiated in this file keeps
// the baseline ISA (an AVX2 copy of a shared inline function could otherwise be picked by the linker for
// callers on any CPU); only the functions defined below are AVX2.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels.h"
#include "kernels_simd.h"

#if CSKERN_X86_AVX2

#pragma GCC push_options
#pragma GCC target("avx2")
#include <immintrin.h>

namespace cskern {
namespace avx2 {
namespace {

// v < 0 ? 0 : v > 255 ? 255 : v — maxpd/minpd return their second operand on ties, so −0 stays −0 as in JS
inline __m256d clamp255(__m256d v) { return _mm256_min_pd(_mm256_set1_pd(255), _mm256_max_pd(_mm256_setzero_pd(), v)); }
inline __m256d roundToFloat(__m256d v) { return _mm256_cvtps_pd(_mm256_cvtpd_ps(v)); }  // a Float32Array store
inline __m256d i32x4ToPd(__m128i v) { return _mm256_cvtepi32_pd(v); }
inline __m128i load4u8(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm_cvtepu8_epi32(_mm_cvtsi32_si128(v));
}

// Horizontal bilinear taps of one plane, for bilinearRow: for each block of 8 output columns whose 16 source
// bytes (p0 and p1 of each column) lie within 16 bytes of the row, the block's first byte and a byte shuffle
// that picks them (the usual downscale to the detector input: ratio below ~2); other blocks go scalar.
struct HTaps {
  const int32_t *a0, *a1;
  const float* wx;
  int n;
  std::vector<int32_t> base;  // per block of 8: first source byte, or −1 (scalar)
  std::vector<int8_t> shuf;   // per block, 16 bytes: 0–7 pick p0, 8–15 pick p1, relative to base
  HTaps(const int32_t* a0_, const int32_t* a1_, const float* wx_, int n_, int stride) : a0(a0_), a1(a1_), wx(wx_), n(n_), base(n_ / 8, -1), shuf(n_ / 8 * 16) {
    for (int b = 0; b < n / 8; b++) {
      const int x = 8 * b, lo = a0[x];
      if (a1[x + 7] - lo > 15 || lo + 16 > stride) continue;  // too wide a span, or the load would leave the row
      int8_t* m = shuf.data() + 16 * b;
      for (int j = 0; j < 8; j++) {
        m[j] = static_cast<int8_t>(a0[x + j] - lo);
        m[8 + j] = static_cast<int8_t>(a1[x + j] - lo);
      }
      base[b] = lo;
    }
  }
};

// dst[x] = p0 + (p1 − p0)·wx[x] (p0 = row[a0[x]], p1 = row[a1[x]]), in double: the reference's `top`/`bot`
void bilinearRow(const uint8_t* row, const HTaps& t, double* dst) {
  int x = 0;
  for (int b = 0; b < t.n / 8; b++, x += 8) {
    if (t.base[b] < 0) {
      for (int j = x; j < x + 8; j++) {
        const double p0 = row[t.a0[j]], p1 = row[t.a1[j]];
        dst[j] = p0 + (p1 - p0) * static_cast<double>(t.wx[j]);
      }
      continue;
    }
    const __m128i px = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + t.base[b])),
                                         _mm_loadu_si128(reinterpret_cast<const __m128i*>(t.shuf.data() + 16 * b)));
    const __m256i p0 = _mm256_cvtepu8_epi32(px), d = _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(px, 8)), p0);  // exact small integers
    const __m256 w = _mm256_loadu_ps(t.wx + x);
    _mm256_storeu_pd(dst + x, _mm256_add_pd(i32x4ToPd(_mm256_castsi256_si128(p0)),
                                            _mm256_mul_pd(i32x4ToPd(_mm256_castsi256_si128(d)), _mm256_cvtps_pd(_mm256_castps256_ps128(w)))));
    _mm256_storeu_pd(dst + x + 4, _mm256_add_pd(i32x4ToPd(_mm256_extracti128_si256(p0, 1)),
                                                _mm256_mul_pd(i32x4ToPd(_mm256_extracti128_si256(d, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(w, 1)))));
  }
  for (; x < t.n; x++) {
    const double p0 = row[t.a0[x]], p1 = row[t.a1[x]];
    dst[x] = p0 + (p1 - p0) * static_cast<double>(t.wx[x]);
  }
}

// One plane's horizontally interpolated source rows; the two most recent are kept (consecutive output
// rows share source rows).
struct RowCache {
  const uint8_t* plane;
  int stride;
  const HTaps& taps;
  std::vector<double> buf[2];
  int idx[2] = {-1, -1};
  RowCache(const uint8_t* p, int s, const HTaps& t) : plane(p), stride(s), taps(t) {
    buf[0].resize(t.n);
    buf[1].resize(t.n);
  }
  // the interpolated row r; `keep` (the other row this output row needs) is not evicted
  const double* get(int r, int keep) {
    for (int i = 0; i < 2; i++)
      if (idx[i] == r) return buf[i].data();
    const int slot = idx[0] == keep ? 1 : 0;
    bilinearRow(plane + static_cast<size_t>(r) * stride, taps, buf[slot].data());
    idx[slot] = r;
    return buf[slot].data();
  }
};

// the reference's per-pixel terms of one row, then Σ into per-MB-column accumulators o[] (double), each
// column in x order. Four MB columns at a time: a 4×4 transpose turns four rows of t (one per column) into
// four vectors of "k-th term of each column", added in k order (the same sequence of roundings).
void accumulateRow(const double* t, int w, double* o) {
  const int full = w / 16, full4 = full & ~3;
  for (int c = 0; c < full4; c += 4) {
    __m256d acc = _mm256_loadu_pd(o + c);
    const double* b = t + static_cast<size_t>(c) * 16;
    for (int k = 0; k < 16; k += 4) {
      const __m256d r0 = _mm256_loadu_pd(b + k), r1 = _mm256_loadu_pd(b + 16 + k), r2 = _mm256_loadu_pd(b + 32 + k), r3 = _mm256_loadu_pd(b + 48 + k);
      const __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
      const __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
      acc = _mm256_add_pd(acc, _mm256_permute2f128_pd(t0, t2, 0x20));  // term k
      acc = _mm256_add_pd(acc, _mm256_permute2f128_pd(t1, t3, 0x20));  // k+1
      acc = _mm256_add_pd(acc, _mm256_permute2f128_pd(t0, t2, 0x31));  // k+2
      acc = _mm256_add_pd(acc, _mm256_permute2f128_pd(t1, t3, 0x31));  // k+3
    }
    _mm256_storeu_pd(o + c, acc);
  }
  for (int c = full4; c < full; c++) {
    double a = o[c];
    for (int k = 0; k < 16; k++) a += t[c * 16 + k];
    o[c] = a;
  }
  for (int x = full * 16; x < w; x++) o[full] += t[x];
}

}  // namespace

void letterbox(const uint8_t* yuv, int w, int h, int S, bool bgr, float* out) {
  const detail::LetterboxTaps tp(w, h, S);
  const detail::YuvPlanes yp(yuv, w, h);
  const int plane = S * S, nW = tp.lb.newW, nH = tp.lb.newH;
  const HTaps lt(tp.lx0.data(), tp.lx1.data(), tp.lwx.data(), nW, w), ct(tp.cx0.data(), tp.cx1.data(), tp.cwx.data(), nW, yp.cw);
  RowCache cY(yp.y, w, lt), cU(yp.u, yp.cw, ct), cV(yp.v, yp.cw, ct);
  float* oR = out + (bgr ? 2 * plane : 0);
  float* oG = out + plane;
  float* oB = out + (bgr ? 0 : 2 * plane);
  const __m256d k16 = _mm256_set1_pd(16), k128 = _mm256_set1_pd(128), kY = _mm256_set1_pd(KY), kRV = _mm256_set1_pd(RV),
                kGU = _mm256_set1_pd(GU), kGV = _mm256_set1_pd(GV), kBU = _mm256_set1_pd(BU);
  for (int y = 0; y < nH; y++) {
    const int l0 = tp.ly0[y], l1 = tp.ly1[y], c0 = tp.cy0[y], c1 = tp.cy1[y];
    const double* yt = cY.get(l0, l1);
    const double* yb = cY.get(l1, l0);
    const double* ut = cU.get(c0, c1);
    const double* ub = cU.get(c1, c0);
    const double* vt = cV.get(c0, c1);
    const double* vb = cV.get(c1, c0);
    const size_t o = static_cast<size_t>(y) * S;
    const double wy1 = tp.lwy[y], wcy1 = tp.cwy[y];
    const __m256d wy = _mm256_set1_pd(wy1), wcy = _mm256_set1_pd(wcy1);
    int x = 0;
    for (; x + 4 <= nW; x += 4) {
      const __m256d t = _mm256_loadu_pd(yt + x), u0 = _mm256_loadu_pd(ut + x), v0 = _mm256_loadu_pd(vt + x);
      const __m256d Y = _mm256_add_pd(t, _mm256_mul_pd(_mm256_sub_pd(_mm256_loadu_pd(yb + x), t), wy));
      const __m256d U = _mm256_sub_pd(_mm256_add_pd(u0, _mm256_mul_pd(_mm256_sub_pd(_mm256_loadu_pd(ub + x), u0), wcy)), k128);
      const __m256d V = _mm256_sub_pd(_mm256_add_pd(v0, _mm256_mul_pd(_mm256_sub_pd(_mm256_loadu_pd(vb + x), v0), wcy)), k128);
      const __m256d yy = _mm256_mul_pd(kY, _mm256_sub_pd(Y, k16));
      _mm_storeu_ps(oR + o + x, _mm256_cvtpd_ps(clamp255(_mm256_add_pd(yy, _mm256_mul_pd(kRV, V)))));
      _mm_storeu_ps(oG + o + x, _mm256_cvtpd_ps(clamp255(_mm256_sub_pd(_mm256_sub_pd(yy, _mm256_mul_pd(kGU, U)), _mm256_mul_pd(kGV, V)))));
      _mm_storeu_ps(oB + o + x, _mm256_cvtpd_ps(clamp255(_mm256_add_pd(yy, _mm256_mul_pd(kBU, U)))));
    }
    for (; x < nW; x++) {
      const double Y = yt[x] + (yb[x] - yt[x]) * wy1;
      const double U = ut[x] + (ub[x] - ut[x]) * wcy1 - 128;
      const double V = vt[x] + (vb[x] - vt[x]) * wcy1 - 128;
      const double yy = KY * (Y - 16);
      oR[o + x] = static_cast<float>(detail::clamp255(yy + RV * V));
      oG[o + x] = static_cast<float>(detail::clamp255(yy - GU * U - GV * V));
      oB[o + x] = static_cast<float>(detail::clamp255(yy + BU * U));
    }
    for (int c = 0; c < 3; c++) std::fill(out + c * plane + o + nW, out + c * plane + o + S, 114.0f);
  }
  for (int c = 0; c < 3; c++) std::fill(out + c * plane + static_cast<size_t>(nH) * S, out + (c + 1) * plane, 114.0f);
}

void halfResRgb(const uint8_t* src, int w, int h, float* out) {
  const detail::YuvPlanes yp(src, w, h);
  const int W = mbCols(w) * 8, H = mbRows(h) * 8, inner = std::min(W, yp.cw), cw = yp.cw, ch = yp.ch;
  const size_t plane = static_cast<size_t>(W) * H;
  const __m256d q = _mm256_set1_pd(0.25), k16 = _mm256_set1_pd(16), k128 = _mm256_set1_pd(128), kY = _mm256_set1_pd(KY),
                kRV = _mm256_set1_pd(RV), kGU = _mm256_set1_pd(GU), kGV = _mm256_set1_pd(GV), kBU = _mm256_set1_pd(BU),
                k255 = _mm256_set1_pd(255), half = _mm256_set1_pd(0.5), four = _mm256_set1_pd(4);
  const __m128i ones = _mm_set1_epi16(1);
  // (clamp(v)/255 − 0.5)/0.25, the division by 0.25 written as the exact ×4
  auto norm = [&](__m256d v) { return _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_sub_pd(_mm256_div_pd(clamp255(v), k255), half), four)); };
  for (int y = 0; y < H; y++) {
    const int sy = y < ch ? y : ch - 1;
    const uint8_t* l0 = src + static_cast<size_t>(2 * sy) * w;
    const uint8_t* l1 = l0 + w;
    const uint8_t* u = yp.u + static_cast<size_t>(sy) * cw;
    const uint8_t* v = yp.v + static_cast<size_t>(sy) * cw;
    float* oR = out + static_cast<size_t>(y) * W;
    float* oG = oR + plane;
    float* oB = oG + plane;
    int x = 0;
    for (; x + 4 <= inner; x += 4) {
      // the 2×2 luma sums of 4 output pixels (exact small integers, so the order of the adds is immaterial)
      const __m128i a = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(l0 + 2 * x)));
      const __m128i b = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(l1 + 2 * x)));
      const __m256d Y = _mm256_mul_pd(i32x4ToPd(_mm_madd_epi16(_mm_add_epi16(a, b), ones)), q);
      const __m256d U = _mm256_sub_pd(i32x4ToPd(load4u8(u + x)), k128);
      const __m256d V = _mm256_sub_pd(i32x4ToPd(load4u8(v + x)), k128);
      const __m256d c = _mm256_mul_pd(kY, _mm256_sub_pd(Y, k16));
      _mm_storeu_ps(oR + x, norm(_mm256_add_pd(c, _mm256_mul_pd(kRV, V))));
      _mm_storeu_ps(oG + x, norm(_mm256_sub_pd(_mm256_sub_pd(c, _mm256_mul_pd(kGU, U)), _mm256_mul_pd(kGV, V))));
      _mm_storeu_ps(oB + x, norm(_mm256_add_pd(c, _mm256_mul_pd(kBU, U))));
    }
    for (; x < inner; x++) {
      const double Y = static_cast<double>(l0[2 * x] + l1[2 * x] + l0[2 * x + 1] + l1[2 * x + 1]) * 0.25;
      const double U = static_cast<double>(u[x]) - 128, V = static_cast<double>(v[x]) - 128;
      const double c = KY * (Y - 16);
      oR[x] = static_cast<float>((detail::clamp255(c + RV * V) / 255 - 0.5) * 4);
      oG[x] = static_cast<float>((detail::clamp255(c - GU * U - GV * V) / 255 - 0.5) * 4);
      oB[x] = static_cast<float>((detail::clamp255(c + BU * U) / 255 - 0.5) * 4);
    }
    for (; x < W; x++) {  // right edge replication
      oR[x] = oR[inner - 1];
      oG[x] = oG[inner - 1];
      oB[x] = oB[inner - 1];
    }
  }
}

void reduceToMacroblocks(const float* grad, const Letterbox& lb, int frameW, int frameH, bool mean, float* out) {
  const int S = lb.inputSize;
  const size_t plane = static_cast<size_t>(S) * S;
  const int rows = mbRows(frameH), cols = mbCols(frameW);
  const int nW = lb.newW;
  // input columns → MB columns: contiguous runs [colStart[c], colStart[c] + n[c]); padding columns (up to a
  // multiple of 16) are empty runs at nW. Each MB column's terms are added in x order, rounded to float after
  // every add (the reference's Float32Array +=), four MB columns per vector: lane j of step k holds the k-th
  // term of column c+j, or 0 past the end of its run (adding +0 to a non-negative float changes nothing).
  const int cols4 = (cols + 15) & ~15;  // whole blocks of 16 columns
  std::vector<int32_t> colStart(cols4 + 1, nW);
  const int maxW = detail::mbColumnRuns(lb, frameW, cols, colStart.data());
  std::vector<double> runLen(cols4, 0.0);
  int minW = maxW;
  for (int c = 0; c < cols; c++) {
    runLen[c] = colStart[c + 1] - colStart[c];
    minW = std::min(minW, colStart[c + 1] - colStart[c]);
  }
  if (cols4 > cols) minW = 0;
  std::vector<double> s(static_cast<size_t>(nW) + maxW + 8, 0.0);  // zeros past nW: reads past the last run
  std::vector<float> acc(static_cast<size_t>(rows) * cols4, 0.0f);  // the reference's Float32Array, padded
  const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int y = 0; y < lb.newH; y++) {
    const int r = std::min(frameH - 1, static_cast<int>(std::floor((y + 0.5) * lb.invScaleY))) >> 4;
    const float* g0 = grad + static_cast<size_t>(y) * S;
    const float* g1 = g0 + plane;
    const float* g2 = g1 + plane;
    double* sp = s.data();
    int x = 0;
    for (; x + 8 <= nW; x += 8) {  // |g0| + |g1| + |g2| in double, left to right
      const __m256 a = _mm256_and_ps(_mm256_loadu_ps(g0 + x), absMask), b = _mm256_and_ps(_mm256_loadu_ps(g1 + x), absMask),
                   c = _mm256_and_ps(_mm256_loadu_ps(g2 + x), absMask);
      _mm256_storeu_pd(sp + x, _mm256_add_pd(_mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(a)), _mm256_cvtps_pd(_mm256_castps256_ps128(b))),
                                             _mm256_cvtps_pd(_mm256_castps256_ps128(c))));
      _mm256_storeu_pd(sp + x + 4, _mm256_add_pd(_mm256_add_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(b, 1))),
                                                 _mm256_cvtps_pd(_mm256_extractf128_ps(c, 1))));
    }
    for (; x < nW; x++)
      sp[x] = std::fabs(static_cast<double>(g0[x])) + std::fabs(static_cast<double>(g1[x])) + std::fabs(static_cast<double>(g2[x]));
    float* o = acc.data() + static_cast<size_t>(r) * cols4;
    for (int c = 0; c < cols4; c += 16) {  // four groups of four MB columns at once: independent chains overlap
      const double* p[16];
      for (int j = 0; j < 16; j++) p[j] = sp + colStart[c + j];
      __m256d a[4], n[4];
      for (int g = 0; g < 4; g++) {
        a[g] = _mm256_cvtps_pd(_mm_loadu_ps(o + c + 4 * g));
        n[g] = _mm256_loadu_pd(runLen.data() + c + 4 * g);
      }
      int k = 0;
      for (; k < minW; k++)
        for (int g = 0; g < 4; g++) a[g] = roundToFloat(_mm256_add_pd(a[g], _mm256_setr_pd(p[4 * g][k], p[4 * g + 1][k], p[4 * g + 2][k], p[4 * g + 3][k])));
      for (; k < maxW; k++) {  // some runs have ended: their lanes add 0
        const __m256d kk = _mm256_set1_pd(k);
        for (int g = 0; g < 4; g++) {
          const __m256d t = _mm256_setr_pd(p[4 * g][k], p[4 * g + 1][k], p[4 * g + 2][k], p[4 * g + 3][k]);
          a[g] = roundToFloat(_mm256_add_pd(a[g], _mm256_and_pd(t, _mm256_cmp_pd(kk, n[g], _CMP_LT_OQ))));
        }
      }
      for (int g = 0; g < 4; g++) _mm_storeu_ps(o + c + 4 * g, _mm256_cvtpd_ps(a[g]));
    }
  }
  for (int r = 0; r < rows; r++) std::copy(acc.data() + static_cast<size_t>(r) * cols4, acc.data() + static_cast<size_t>(r) * cols4 + cols, out + static_cast<size_t>(r) * cols);
  if (mean) detail::divideByMbArea(out, frameW, frameH);
}

void frameDiffPerMb(const uint8_t* a, const uint8_t* b, int w, int h, bool rgb, const float* wt, bool mean, float* out) {
  const int cols = mbCols(w);
  const int cw = w >> 1;
  const size_t uOff = static_cast<size_t>(w) * h;
  const size_t vOff = uOff + static_cast<size_t>(cw) * (h >> 1);
  std::vector<double> acc(static_cast<size_t>(mbRows(h)) * cols, 0.0), t(w);
  const __m256d kY = _mm256_set1_pd(KY), kRV = _mm256_set1_pd(RV), kGU = _mm256_set1_pd(GU), kGV = _mm256_set1_pd(GV), kBU = _mm256_set1_pd(BU);
  const __m256d absMask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
  for (int y = 0; y < h; y++) {
    const uint8_t* ay = a + static_cast<size_t>(y) * w;
    const uint8_t* by = b + static_cast<size_t>(y) * w;
    const size_t c0 = static_cast<size_t>(y >> 1) * cw;
    const float* wy = wt ? wt + static_cast<size_t>(y) * w : nullptr;
    double* tp = t.data();
    int x = 0;
    for (; x + 8 <= w; x += 8) {  // 8 pixels, 4 chroma samples
      const __m128i dU4 = _mm_sub_epi32(load4u8(a + uOff + c0 + x / 2), load4u8(b + uOff + c0 + x / 2));
      const __m128i dV4 = _mm_sub_epi32(load4u8(a + vOff + c0 + x / 2), load4u8(b + vOff + c0 + x / 2));
      for (int j = 0; j < 2; j++) {
        const __m128i dY = _mm_sub_epi32(load4u8(ay + x + 4 * j), load4u8(by + x + 4 * j));
        const __m128i dU = j ? _mm_unpackhi_epi32(dU4, dU4) : _mm_unpacklo_epi32(dU4, dU4);  // each sample for 2 pixels
        const __m128i dV = j ? _mm_unpackhi_epi32(dV4, dV4) : _mm_unpacklo_epi32(dV4, dV4);
        __m256d d;
        if (rgb) {
          const __m256d yy = _mm256_mul_pd(kY, i32x4ToPd(dY)), U = i32x4ToPd(dU), V = i32x4ToPd(dV);
          const __m256d R = _mm256_and_pd(_mm256_add_pd(yy, _mm256_mul_pd(kRV, V)), absMask);
          const __m256d G = _mm256_and_pd(_mm256_sub_pd(_mm256_sub_pd(yy, _mm256_mul_pd(kGU, U)), _mm256_mul_pd(kGV, V)), absMask);
          const __m256d B = _mm256_and_pd(_mm256_add_pd(yy, _mm256_mul_pd(kBU, U)), absMask);
          d = _mm256_add_pd(_mm256_add_pd(R, G), B);
        } else {  // |ΔY| + |ΔU| + |ΔV|: integers, exact
          d = i32x4ToPd(_mm_add_epi32(_mm_add_epi32(_mm_abs_epi32(dY), _mm_abs_epi32(dU)), _mm_abs_epi32(dV)));
        }
        if (wy) d = _mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(wy + x + 4 * j)), d);
        _mm256_storeu_pd(tp + x + 4 * j, d);
      }
    }
    for (; x < w; x++) {
      const size_t ci = c0 + x / 2;
      const int dY = static_cast<int>(ay[x]) - by[x], dU = static_cast<int>(a[uOff + ci]) - b[uOff + ci], dV = static_cast<int>(a[vOff + ci]) - b[vOff + ci];
      const double d = rgb ? detail::rgbAbsDiff(dY, dU, dV) : std::abs(dY) + std::abs(dU) + std::abs(dV);
      tp[x] = wy ? static_cast<double>(wy[x]) * d : d;
    }
    accumulateRow(tp, w, acc.data() + static_cast<size_t>(y >> 4) * cols);
  }
  detail::storeMbSums(acc.data(), w, h, mean, out);
}

void planePerMb(const float* plane, int w, int h, bool mean, float* out) {
  const int cols = mbCols(w);
  std::vector<double> acc(static_cast<size_t>(mbRows(h)) * cols, 0.0), t(w);
  for (int y = 0; y < h; y++) {
    const float* row = plane + static_cast<size_t>(y) * w;
    int x = 0;
    for (; x + 4 <= w; x += 4) _mm256_storeu_pd(t.data() + x, _mm256_cvtps_pd(_mm_loadu_ps(row + x)));
    for (; x < w; x++) t[x] = row[x];
    accumulateRow(t.data(), w, acc.data() + static_cast<size_t>(y >> 4) * cols);
  }
  detail::storeMbSums(acc.data(), w, h, mean, out);
}

}  // namespace avx2
}  // namespace cskern

#pragma GCC pop_options

#endif  // CSKERN_X86_AVX2
