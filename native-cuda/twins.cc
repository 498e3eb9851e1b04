#include "twins.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "../encoder/native/kernels.h"

namespace cstwin {

void letterboxBatch(const uint8_t* yuv, const int32_t* dims, int n, int S, bool bgr, float* out) {
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    const int w = dims[2 * i], h = dims[2 * i + 1];
    cskern::letterbox(yuv + off, w, h, S, bgr, out + static_cast<size_t>(i) * 3 * S * S);
    off += static_cast<size_t>(w) * h + 2 * static_cast<size_t>(w / 2) * (h / 2);
  }
}

void ropeDelta(float* k, const int32_t* delta, int T, int H, int D, double base) {
  const int half = D / 2;
  for (int t = 0; t < T; t++) {
    for (int j = 0; j < half; j++) {
      const double ang = static_cast<double>(delta[t]) * std::pow(base, -2.0 * j / D);
      const double c = std::cos(ang), s = std::sin(ang);
      for (int h = 0; h < H; h++) {
        float* row = k + (static_cast<size_t>(t) * H + h) * D;
        const double x0 = row[j], x1 = row[j + half];
        row[j] = static_cast<float>(x0 * c - x1 * s);
        row[j + half] = static_cast<float>(x0 * s + x1 * c);
      }
    }
  }
}

void tokenDeviation(const float* a, const float* b, int T, int HD, float* dev) {
  for (int t = 0; t < T; t++) {
    double s = 0;
    const float* x = a + static_cast<size_t>(t) * HD;
    const float* y = b + static_cast<size_t>(t) * HD;
    for (int i = 0; i < HD; i++) {
      const double d = static_cast<double>(x[i]) - y[i];
      s += d * d;
    }
    dev[t] = static_cast<float>(s);
  }
}

void topK(const float* v, int n, int k, int32_t* idx) {
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  k = std::min(k, n);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [v](int32_t a, int32_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
  std::copy(order.begin(), order.begin() + k, idx);
}

void quantiseGather(const float* latent, const int32_t* perm, int n, float step, int16_t* symbols) {
  for (int i = 0; i < n; i++) {
    const float q = std::rint(latent[perm[i]] / step);
    symbols[i] = static_cast<int16_t>(std::max(-32767.0f, std::min(32767.0f, q)));
  }
}

void scatterDequantise(const int16_t* symbols, const int32_t* perm, int n, int packetSize, const uint8_t* received,
                       float step, float* latent) {
  for (int i = 0; i < n; i++) latent[perm[i]] = received[i / packetSize] ? symbols[i] * step : 0.0f;
}

std::string checkPermutation(const int32_t* perm, int n) {
  std::vector<uint8_t> seen(n, 0);
  for (int i = 0; i < n; i++) {
    const int32_t p = perm[i];
    if (p < 0 || p >= n) return "perm[" + std::to_string(i) + "] = " + std::to_string(p) + " is outside [0," + std::to_string(n) + ")";
    if (seen[p]) return "perm repeats " + std::to_string(p);
    seen[p] = 1;
  }
  return "";
}

}  // namespace cstwin
