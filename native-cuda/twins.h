// CPU twins of the kernels that only a GPU server needs (the frame kernels' CPU twins are
// encoder/native/kernels.h, compiled into this addon too). Each GPU kernel in kernels.cu is tested
// against the function here of the same name (test/native-cuda.test.ts).
#pragma once
#include <cstdint>
#include <string>

namespace cstwin {

// Batched detector preprocessing across streams: n frames (each its own even size) packed back to back
// in yuv; dims = [w0,h0,w1,h1,…]; out = n letterboxed [3,S,S] inputs. Loops cskern::letterbox.
void letterboxBatch(const uint8_t* yuv, const int32_t* dims, int n, int S, bool bgr, float* out);

// CacheBlend's RoPE delta: a key cache computed at positions p is moved to p+delta[t] by rotating each
// (j, j+D/2) pair ("rotate-half" RoPE, as LLaMA/Mistral) by delta[t]·base^(−2j/D). k: [T,H,D] float,
// rotated in place. Angles, cos and sin in double, the result rounded to float.
void ropeDelta(float* k, const int32_t* delta, int T, int H, int D, double base);

// CacheBlend's KV deviation per token: dev[t] = Σ_{h,d} (a − b)² over one layer's [T,H·D] keys (or values)
// of the recomputed and the cached KV, accumulated in double, stored as float.
void tokenDeviation(const float* a, const float* b, int T, int HD, float* dev);

// Indices of the k largest values (ties: lower index first), ordered by value descending.
void topK(const float* v, int n, int k, int32_t* idx);

// Grace's packetisation, sender side: symbols[i] = clamp(rint(latent[perm[i]] / step), ±32767) —
// the latent quantised and gathered into packet order (perm: a seeded permutation of [0,n)).
void quantiseGather(const float* latent, const int32_t* perm, int n, float step, int16_t* symbols);

// Receiver side: latent[perm[i]] = symbols[i]·step if packet i/packetSize arrived, else 0 (the prior's
// mode, Grace's masking).
void scatterDequantise(const int16_t* symbols, const int32_t* perm, int n, int packetSize, const uint8_t* received,
                       float step, float* latent);

// "" when perm is a permutation of [0,n), else what is wrong (checked before any kernel indexes with it).
std::string checkPermutation(const int32_t* perm, int n);

}  // namespace cstwin
