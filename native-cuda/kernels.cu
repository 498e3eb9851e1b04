// CUDA versions of camstream's frame kernels (twins: encoder/native/kernels.cc) and of the GPU server's own
// kernels (twins: twins.cc). Same operations in the same precision as the twins (doubles where they use
// doubles; built with --fmad=false so no multiply-add is fused), one thread per output value; per-MB
// sums run one thread per macroblock in the twins' order, so they round identically too. Written for
// C++14 so that JetPack 4's CUDA 10.2 compiles it.
#include <cuda_runtime.h>

#include <cmath>
#include <algorithm>
#include <memory>
#include <vector>

#include "../encoder/native/kernels.h"
#include "gpu.h"

namespace csgpu {

namespace {

// device buffer freed on scope exit
template <typename T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  cudaError_t alloc(size_t count) { n = count; return cudaMalloc(reinterpret_cast<void**>(&p), (count ? count : 1) * sizeof(T)); }
  cudaError_t up(const T* h) { return cudaMemcpy(p, h, n * sizeof(T), cudaMemcpyHostToDevice); }
  cudaError_t down(T* h) const { return cudaMemcpy(h, p, n * sizeof(T), cudaMemcpyDeviceToHost); }
  ~Dev() { if (p) cudaFree(p); }
};

#define CK(x)                                                         \
  do {                                                                \
    cudaError_t e_ = (x);                                             \
    if (e_ != cudaSuccess) return std::string(#x ": ") + cudaGetErrorString(e_); \
  } while (0)

#define TRY(x)                          \
  do {                                  \
    const std::string e_ = (x);         \
    if (!e_.empty()) return e_;         \
  } while (0)

// allocate n elements on the device and copy them from host (h may be null: allocate only)
template <typename T>
std::string upload(Dev<T>& d, const T* h, size_t n) {
  CK(d.alloc(n));
  if (h) CK(d.up(h));
  return "";
}

// wait for the launched kernels and copy a result back
template <typename T>
std::string collect(const Dev<T>& d, T* h) {
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
  CK(d.down(h));
  return "";
}

inline unsigned blocks(size_t n, unsigned t) { return static_cast<unsigned>((n + t - 1) / t); }

__device__ inline double clamp255(double v) { return v < 0 ? 0 : v > 255 ? 255 : v; }

// bilinearTaps() for one destination index
__device__ inline void tap(int d, int srcN, double ratio, double offset, int& i0, int& i1, double& w) {
  double s = (d + 0.5) * ratio - 0.5 + offset;
  if (s < 0) s = 0;
  if (s > srcN - 1) s = srcN - 1;
  const double f = floor(s);
  i0 = static_cast<int>(f);
  i1 = min(i0 + 1, srcN - 1);
  w = static_cast<double>(static_cast<float>(s - f));  // the twin keeps the weight as float
}

struct FrameGeom {
  long long off;  // byte offset of the frame in the packed batch
  int w, h, newW, newH;
  double rx, ry;
};

__global__ void kLetterbox(const uint8_t* __restrict__ yuv, const FrameGeom* __restrict__ geo, int S, bool bgr, float* __restrict__ out) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y, n = blockIdx.z;
  if (x >= S || y >= S) return;
  const FrameGeom g = geo[n];
  const size_t plane = static_cast<size_t>(S) * S;
  float* o = out + n * 3 * plane + static_cast<size_t>(y) * S + x;
  if (x >= g.newW || y >= g.newH) {
    o[0] = o[plane] = o[2 * plane] = 114.0f;
    return;
  }
  const int w = g.w, h = g.h, cw = w >> 1, ch = h >> 1;
  const uint8_t* Yp = yuv + g.off;
  const uint8_t* Up = Yp + static_cast<size_t>(w) * h;
  const uint8_t* Vp = Up + static_cast<size_t>(cw) * ch;
  int a0, a1, r0, r1, c0, c1, q0, q1;
  double wx, wy, wcx, wcy;
  tap(x, w, g.rx, 0, a0, a1, wx);
  tap(y, h, g.ry, 0, r0, r1, wy);
  tap(x, cw, g.rx / 2, 0.25, c0, c1, wcx);
  tap(y, ch, g.ry / 2, 0, q0, q1, wcy);
  auto lerp2 = [](const uint8_t* row, int i0, int i1, double f) { const double p0 = row[i0], p1 = row[i1]; return p0 + (p1 - p0) * f; };
  const double yt = lerp2(Yp + static_cast<size_t>(r0) * w, a0, a1, wx), yb = lerp2(Yp + static_cast<size_t>(r1) * w, a0, a1, wx);
  const double ut = lerp2(Up + static_cast<size_t>(q0) * cw, c0, c1, wcx), ub = lerp2(Up + static_cast<size_t>(q1) * cw, c0, c1, wcx);
  const double vt = lerp2(Vp + static_cast<size_t>(q0) * cw, c0, c1, wcx), vb = lerp2(Vp + static_cast<size_t>(q1) * cw, c0, c1, wcx);
  const double Y = yt + (yb - yt) * wy;
  const double U = ut + (ub - ut) * wcy - 128;
  const double V = vt + (vb - vt) * wcy - 128;
  const double yy = cskern::KY * (Y - 16);
  const double R = clamp255(yy + cskern::RV * V);
  const double G = clamp255(yy - cskern::GU * U - cskern::GV * V);
  const double B = clamp255(yy + cskern::BU * U);
  o[0] = static_cast<float>(bgr ? B : R);
  o[plane] = static_cast<float>(G);
  o[2 * plane] = static_cast<float>(bgr ? R : B);
}

__global__ void kHalfRes(const uint8_t* __restrict__ src, int w, int h, int W, int H, float* __restrict__ out) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x >= W || y >= H) return;
  const int cw = w >> 1, ch = h >> 1;
  const int sy = y < ch ? y : ch - 1, sx = x < cw ? x : cw - 1;
  const uint8_t* l0 = src + static_cast<size_t>(2 * sy) * w;
  const uint8_t* l1 = l0 + w;
  const uint8_t* Up = src + static_cast<size_t>(w) * h;
  const uint8_t* Vp = Up + static_cast<size_t>(cw) * ch;
  const double Y = static_cast<double>(l0[2 * sx] + l1[2 * sx] + l0[2 * sx + 1] + l1[2 * sx + 1]) * 0.25;
  const double U = static_cast<double>(Up[static_cast<size_t>(sy) * cw + sx]) - 128;
  const double V = static_cast<double>(Vp[static_cast<size_t>(sy) * cw + sx]) - 128;
  const double c = cskern::KY * (Y - 16);
  const size_t plane = static_cast<size_t>(W) * H, i = static_cast<size_t>(y) * W + x;
  out[i] = static_cast<float>((clamp255(c + cskern::RV * V) / 255 - 0.5) * 4);
  out[plane + i] = static_cast<float>((clamp255(c - cskern::GU * U - cskern::GV * V) / 255 - 0.5) * 4);
  out[2 * plane + i] = static_cast<float>((clamp255(c + cskern::BU * U) / 255 - 0.5) * 4);
}

__device__ inline double sal3(const float* g, size_t i, size_t plane) {
  return fabs(static_cast<double>(g[i])) + fabs(static_cast<double>(g[i + plane])) + fabs(static_cast<double>(g[i + 2 * plane]));
}

// one thread per MB: the input rows [rowStart[r], rowStart[r+1]) and columns [colStart[c], colStart[c+1])
__global__ void kReduce(const float* __restrict__ g, int S, const int* __restrict__ rowStart, const int* __restrict__ colStart, int rows, int cols,
                        int frameW, int frameH, bool mean, float* __restrict__ out) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y * blockDim.y + threadIdx.y;
  if (c >= cols || r >= rows) return;
  const size_t plane = static_cast<size_t>(S) * S;
  float acc = 0.0f;
  for (int y = rowStart[r]; y < rowStart[r + 1]; y++)
    for (int x = colStart[c]; x < colStart[c + 1]; x++) acc = static_cast<float>(static_cast<double>(acc) + sal3(g, static_cast<size_t>(y) * S + x, plane));
  if (mean) acc = static_cast<float>(static_cast<double>(acc) / (min(16, frameH - r * 16) * min(16, frameW - c * 16)));
  out[r * cols + c] = acc;
}

__global__ void kSalToFrame(const float* __restrict__ g, int S, int newW, int newH, double invX, double invY, int frameW, int frameH, float* __restrict__ out) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x >= frameW || y >= frameH) return;
  const double k = 1 / (invX * invY);
  const int xi = min(newW - 1, static_cast<int>(floor((x + 0.5) / invX)));
  const int yi = min(newH - 1, static_cast<int>(floor((y + 0.5) / invY)));
  out[static_cast<size_t>(y) * frameW + x] = static_cast<float>(k * sal3(g, static_cast<size_t>(yi) * S + xi, static_cast<size_t>(S) * S));
}

// per-MB sums in double, in the twin's order (rows of the MB top to bottom, left to right), stored as
// float, then (mean) divided by the MB's pixel area
__device__ inline float mbStore(double acc, bool mean, int mbH, int mbW) {
  float v = static_cast<float>(acc);
  if (mean) v = static_cast<float>(static_cast<double>(v) / (mbH * mbW));
  return v;
}

__global__ void kFrameDiff(const uint8_t* __restrict__ a, const uint8_t* __restrict__ b, int w, int h, int rows, int cols, bool rgb,
                           const float* __restrict__ wt, bool mean, float* __restrict__ out) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y * blockDim.y + threadIdx.y;
  if (c >= cols || r >= rows) return;
  const int cw = w >> 1;
  const size_t uOff = static_cast<size_t>(w) * h, vOff = uOff + static_cast<size_t>(cw) * (h >> 1);
  double acc = 0;
  const int ye = min(h, r * 16 + 16), xe = min(w, c * 16 + 16);
  for (int y = r * 16; y < ye; y++)
    for (int x = c * 16; x < xe; x++) {
      const size_t p = static_cast<size_t>(y) * w + x, ci = static_cast<size_t>(y >> 1) * cw + (x >> 1);
      const int dY = static_cast<int>(a[p]) - b[p];
      const int dU = static_cast<int>(a[uOff + ci]) - b[uOff + ci];
      const int dV = static_cast<int>(a[vOff + ci]) - b[vOff + ci];
      double d;
      if (rgb) {
        const double yy = cskern::KY * dY;
        d = fabs(yy + cskern::RV * dV) + fabs(yy - cskern::GU * dU - cskern::GV * dV) + fabs(yy + cskern::BU * dU);
      } else {
        d = abs(dY) + abs(dU) + abs(dV);
      }
      acc += wt ? static_cast<double>(wt[p]) * d : d;
    }
  out[r * cols + c] = mbStore(acc, mean, ye - r * 16, xe - c * 16);
}

__global__ void kPlanePerMb(const float* __restrict__ plane, int w, int h, int rows, int cols, bool mean, float* __restrict__ out) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y * blockDim.y + threadIdx.y;
  if (c >= cols || r >= rows) return;
  double acc = 0;
  const int ye = min(h, r * 16 + 16), xe = min(w, c * 16 + 16);
  for (int y = r * 16; y < ye; y++)
    for (int x = c * 16; x < xe; x++) acc += plane[static_cast<size_t>(y) * w + x];
  out[r * cols + c] = mbStore(acc, mean, ye - r * 16, xe - c * 16);
}

__global__ void kBinarize(const float* __restrict__ p, size_t n, double thr, uint8_t* __restrict__ m) {
  const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (i < n) m[i] = static_cast<double>(p[i]) > thr ? 1 : 0;
}

__global__ void kMorph(const uint8_t* __restrict__ m, int rows, int cols, bool isMin, uint8_t* __restrict__ out) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y * blockDim.y + threadIdx.y;
  if (c >= cols || r >= rows) return;
  uint8_t v = isMin ? 1 : 0;
  for (int rr = max(0, r - 1); rr <= min(rows - 1, r + 1); rr++)
    for (int cc = max(0, c - 1); cc <= min(cols - 1, c + 1); cc++) {
      const uint8_t x = m[rr * cols + cc];
      v = isMin ? (x < v ? x : v) : (x > v ? x : v);
    }
  out[r * cols + c] = v;
}

__global__ void kRope(float* __restrict__ k, const int32_t* __restrict__ delta, int T, int H, int D, double base) {
  const int half = D / 2;
  const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;  // over T·H·half
  if (i >= static_cast<size_t>(T) * H * half) return;
  const int j = static_cast<int>(i % half);
  const size_t th = i / half;
  const int t = static_cast<int>(th / H);
  const double ang = static_cast<double>(delta[t]) * pow(base, -2.0 * j / D);
  const double c = cos(ang), s = sin(ang);
  float* row = k + th * D;
  const double x0 = row[j], x1 = row[j + half];
  row[j] = static_cast<float>(x0 * c - x1 * s);
  row[j + half] = static_cast<float>(x0 * s + x1 * c);
}

constexpr int kDevThreads = 256;
__global__ void kTokenDev(const float* __restrict__ a, const float* __restrict__ b, int HD, float* __restrict__ dev) {
  __shared__ double part[kDevThreads];
  const size_t base = static_cast<size_t>(blockIdx.x) * HD;
  double s = 0;
  for (int i = threadIdx.x; i < HD; i += blockDim.x) {
    const double d = static_cast<double>(a[base + i]) - b[base + i];
    s += d * d;
  }
  part[threadIdx.x] = s;
  __syncthreads();
  for (int st = blockDim.x / 2; st > 0; st >>= 1) {
    if (threadIdx.x < st) part[threadIdx.x] += part[threadIdx.x + st];
    __syncthreads();
  }
  if (threadIdx.x == 0) dev[blockIdx.x] = static_cast<float>(part[0]);
}

// rank of each value among all (descending, ties by index); O(n²) comparisons, fine for a context's
// few thousand tokens
__global__ void kTopK(const float* __restrict__ v, int n, int k, int32_t* __restrict__ idx) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float vi = v[i];
  int rank = 0;
  for (int j = 0; j < n; j++) {
    const float vj = v[j];
    rank += (vj > vi || (vj == vi && j < i)) ? 1 : 0;
  }
  if (rank < k) idx[rank] = i;
}

__global__ void kQuantiseGather(const float* __restrict__ latent, const int32_t* __restrict__ perm, int n, float step, int16_t* __restrict__ sym) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float q = rintf(latent[perm[i]] / step);
  sym[i] = static_cast<int16_t>(fmaxf(-32767.0f, fminf(32767.0f, q)));
}

__global__ void kScatter(const int16_t* __restrict__ sym, const int32_t* __restrict__ perm, int n, int packetSize, const uint8_t* __restrict__ received,
                         float step, float* __restrict__ latent) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  latent[perm[i]] = received[i / packetSize] ? sym[i] * step : 0.0f;
}

const dim3 k2d(32, 8);
inline dim3 grid2d(int x, int y, int z = 1) { return dim3(blocks(x, k2d.x), blocks(y, k2d.y), z); }

}  // namespace

DeviceInfo deviceInfo() {
  DeviceInfo info;
  cudaRuntimeGetVersion(&info.runtimeVersion);
  cudaDriverGetVersion(&info.driverVersion);
  const cudaError_t e = cudaGetDeviceCount(&info.count);
  if (e != cudaSuccess) {
    info.count = 0;
    info.error = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    cudaGetLastError();  // clear the sticky error state of this thread
    return info;
  }
  if (info.count == 0) {
    info.error = "no CUDA device";
    return info;
  }
  cudaDeviceProp p;
  if (cudaGetDeviceProperties(&p, 0) == cudaSuccess) {
    info.name = p.name;
    info.major = p.major;
    info.minor = p.minor;
    info.memoryGiB = static_cast<double>(p.totalGlobalMem) / (1024.0 * 1024 * 1024);
  }
  return info;
}

std::string letterboxBatch(const uint8_t* yuv, size_t yuvBytes, const int32_t* dims, int n, int S, bool bgr, float* out) {
  std::vector<FrameGeom> geo(n);
  long long off = 0;
  for (int i = 0; i < n; i++) {
    const int w = dims[2 * i], h = dims[2 * i + 1];
    const cskern::Letterbox lb = cskern::letterboxFor(w, h, S);
    geo[i] = FrameGeom{off, w, h, lb.newW, lb.newH, static_cast<double>(w) / lb.newW, static_cast<double>(h) / lb.newH};
    off += static_cast<long long>(w) * h + 2LL * (w / 2) * (h / 2);
  }
  Dev<uint8_t> dy;
  Dev<FrameGeom> dg;
  Dev<float> dout;
  TRY(upload(dy, yuv, yuvBytes));
  TRY(upload(dg, geo.data(), geo.size()));
  TRY(upload<float>(dout, nullptr, static_cast<size_t>(n) * 3 * S * S));
  kLetterbox<<<grid2d(S, S, n), k2d>>>(dy.p, dg.p, S, bgr, dout.p);
  return collect(dout, out);
}

inline size_t yuvBytes(int w, int h) { return static_cast<size_t>(w) * h + 2 * static_cast<size_t>(w / 2) * (h / 2); }

std::string halfResRgb(const uint8_t* yuv, int w, int h, float* out) {
  const int W = cskern::mbCols(w) * 8, H = cskern::mbRows(h) * 8;
  Dev<uint8_t> dy;
  Dev<float> dout;
  TRY(upload(dy, yuv, yuvBytes(w, h)));
  TRY(upload<float>(dout, nullptr, 3 * static_cast<size_t>(W) * H));
  kHalfRes<<<grid2d(W, H), k2d>>>(dy.p, w, h, W, H, dout.p);
  return collect(dout, out);
}

std::string reduceToMacroblocks(const float* grad, int S, int frameW, int frameH, bool mean, float* out) {
  const cskern::Letterbox lb = cskern::letterboxFor(frameW, frameH, S);
  const int rows = cskern::mbRows(frameH), cols = cskern::mbCols(frameW);
  // start of each MB's run of input rows / columns (the mapping input → MB is monotone)
  auto starts = [](int nIn, int nMb, double inv, int frameN) {
    std::vector<int> st(nMb + 1, nIn);
    for (int i = nIn - 1; i >= 0; i--) st[std::min(frameN - 1, static_cast<int>(std::floor((i + 0.5) * inv))) >> 4] = i;
    for (int m = nMb - 1; m >= 0; m--) st[m] = std::min(st[m], st[m + 1]);
    return st;
  };
  const std::vector<int> rs = starts(lb.newH, rows, lb.invScaleY, frameH), cs = starts(lb.newW, cols, lb.invScaleX, frameW);
  Dev<float> dg, dout;
  Dev<int> drs, dcs;
  TRY(upload(dg, grad, 3 * static_cast<size_t>(S) * S));
  TRY(upload(drs, rs.data(), rs.size()));
  TRY(upload(dcs, cs.data(), cs.size()));
  TRY(upload<float>(dout, nullptr, static_cast<size_t>(rows) * cols));
  kReduce<<<grid2d(cols, rows), k2d>>>(dg.p, S, drs.p, dcs.p, rows, cols, frameW, frameH, mean, dout.p);
  return collect(dout, out);
}

std::string saliencyToFrame(const float* grad, int S, int frameW, int frameH, float* out) {
  const cskern::Letterbox lb = cskern::letterboxFor(frameW, frameH, S);
  Dev<float> dg, dout;
  TRY(upload(dg, grad, 3 * static_cast<size_t>(S) * S));
  TRY(upload<float>(dout, nullptr, static_cast<size_t>(frameW) * frameH));
  kSalToFrame<<<grid2d(frameW, frameH), k2d>>>(dg.p, S, lb.newW, lb.newH, lb.invScaleX, lb.invScaleY, frameW, frameH, dout.p);
  return collect(dout, out);
}

std::string frameDiffPerMb(const uint8_t* a, const uint8_t* b, int w, int h, bool rgb, const float* wt, bool mean, float* out) {
  const int rows = cskern::mbRows(h), cols = cskern::mbCols(w);
  Dev<float> dw, dout;
  Dev<uint8_t> da, db;
  if (wt) TRY(upload(dw, wt, static_cast<size_t>(w) * h));
  TRY(upload(da, a, yuvBytes(w, h)));
  TRY(upload(db, b, yuvBytes(w, h)));
  TRY(upload<float>(dout, nullptr, static_cast<size_t>(rows) * cols));
  kFrameDiff<<<grid2d(cols, rows), k2d>>>(da.p, db.p, w, h, rows, cols, rgb, wt ? dw.p : nullptr, mean, dout.p);
  return collect(dout, out);
}

std::string planePerMb(const float* plane, int w, int h, bool mean, float* out) {
  const int rows = cskern::mbRows(h), cols = cskern::mbCols(w);
  Dev<float> dp, dout;
  TRY(upload(dp, plane, static_cast<size_t>(w) * h));
  TRY(upload<float>(dout, nullptr, static_cast<size_t>(rows) * cols));
  kPlanePerMb<<<grid2d(cols, rows), k2d>>>(dp.p, w, h, rows, cols, mean, dout.p);
  return collect(dout, out);
}

std::string importanceMask(const float* p, int rows, int cols, double threshold, bool smooth, uint8_t* out) {
  const size_t n = static_cast<size_t>(rows) * cols;
  if (n == 0) return "";
  Dev<float> dp;
  Dev<uint8_t> a, b;
  TRY(upload(dp, p, n));
  TRY(upload<uint8_t>(a, nullptr, n));
  TRY(upload<uint8_t>(b, nullptr, n));
  kBinarize<<<blocks(n, 256), 256>>>(dp.p, n, threshold, a.p);
  if (smooth) {
    kMorph<<<grid2d(cols, rows), k2d>>>(a.p, rows, cols, true, b.p);   // opening
    kMorph<<<grid2d(cols, rows), k2d>>>(b.p, rows, cols, false, a.p);
    kMorph<<<grid2d(cols, rows), k2d>>>(a.p, rows, cols, false, b.p);  // closing
    kMorph<<<grid2d(cols, rows), k2d>>>(b.p, rows, cols, true, a.p);
  }
  return collect(a, out);
}

std::string ropeDelta(float* k, const int32_t* delta, int T, int H, int D, double base) {
  const size_t n = static_cast<size_t>(T) * H * D;
  Dev<float> dk;
  Dev<int32_t> dd;
  TRY(upload(dk, k, n));
  TRY(upload(dd, delta, T));
  if (n) kRope<<<blocks(n / 2, 256), 256>>>(dk.p, dd.p, T, H, D, base);
  return collect(dk, k);
}

std::string tokenDeviationTopK(const float* a, const float* b, int T, int HD, int k, float* dev, int32_t* idx) {
  const size_t n = static_cast<size_t>(T) * HD;
  Dev<float> da, db, dd;
  Dev<int32_t> di;
  TRY(upload(da, a, n));
  TRY(upload(db, b, n));
  TRY(upload<float>(dd, nullptr, T));
  TRY(upload<int32_t>(di, nullptr, k));
  kTokenDev<<<T, kDevThreads>>>(da.p, db.p, HD, dd.p);
  if (k > 0) kTopK<<<blocks(T, 256), 256>>>(dd.p, T, k, di.p);
  TRY(collect(dd, dev));
  return collect(di, idx);
}

std::string quantiseGather(const float* latent, const int32_t* perm, int n, float step, int16_t* symbols) {
  Dev<float> dl;
  Dev<int32_t> dp;
  Dev<int16_t> ds;
  TRY(upload(dl, latent, n));
  TRY(upload(dp, perm, n));
  TRY(upload<int16_t>(ds, nullptr, n));
  if (n > 0) kQuantiseGather<<<blocks(n, 256), 256>>>(dl.p, dp.p, n, step, ds.p);
  return collect(ds, symbols);
}

std::string scatterDequantise(const int16_t* symbols, const int32_t* perm, int n, int packetSize, const uint8_t* received, int packets,
                              float step, float* latent) {
  Dev<int16_t> ds;
  Dev<int32_t> dp;
  Dev<uint8_t> dr;
  Dev<float> dl;
  TRY(upload(ds, symbols, n));
  TRY(upload(dp, perm, n));
  TRY(upload(dr, received, packets));
  TRY(upload<float>(dl, nullptr, n));
  if (n > 0) kScatter<<<blocks(n, 256), 256>>>(ds.p, dp.p, n, packetSize, dr.p, step, dl.p);
  return collect(dl, latent);
}

}  // namespace csgpu
