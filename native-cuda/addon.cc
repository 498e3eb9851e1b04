// camstream_cuda addon: the GPU server's kernels with their CPU twins side by side.
//   info()  → { cuda, devices, error, name, computeCapability, memoryGiB, runtimeVersion, driverVersion, archs }
//   cpu.*   → the twins (always available)
//   gpu.*   → the same signatures on CUDA; throw "CUDA unavailable: …" when the addon was built without
//             nvcc or no device can be used. Loading never needs a GPU (cudart is linked statically and
//             only asked for devices when info() or a gpu.* function is called).
#include <napi.h>

#include <algorithm>
#include <string>
#include <vector>

#include "../encoder/native/kernels.h"
#include "../encoder/native/kernels_bind.h"
#include "../encoder/native/napi_args.h"
#include "twins.h"
#ifdef CAMSTREAM_WITH_CUDA
#include "gpu.h"
#endif

namespace {

using namespace csnapi;

#ifndef CAMSTREAM_CUDA_ARCHS
#define CAMSTREAM_CUDA_ARCHS ""
#endif

// "" when gpu.* can run, else why not
std::string GpuUnavailable() {
#ifdef CAMSTREAM_WITH_CUDA
  static const csgpu::DeviceInfo d = csgpu::deviceInfo();
  return d.count > 0 ? "" : d.error;
#else
  return "addon built without CUDA (nvcc was not found when it was compiled)";
#endif
}

#ifdef CAMSTREAM_WITH_CUDA
void Check(const Napi::Env& env, const std::string& err, const char* what) {
  if (!err.empty()) throw Napi::Error::New(env, std::string(what) + ": " + err);
}
#endif

// ---- backends: the CPU twins and CUDA behind the same static interface (see kernels_bind.h) -------
struct Cpu : CpuFrameKernels {
  static void letterboxBatch(Napi::Env, const uint8_t* yuv, size_t, const int32_t* dims, int n, int S, bool bgr, float* out) {
    cstwin::letterboxBatch(yuv, dims, n, S, bgr, out);
  }
  static void ropeDelta(Napi::Env, float* k, const int32_t* delta, int T, int H, int D, double base) { cstwin::ropeDelta(k, delta, T, H, D, base); }
  static void tokenDeviationTopK(Napi::Env, const float* a, const float* b, int T, int HD, int k, float* dev, int32_t* idx) {
    cstwin::tokenDeviation(a, b, T, HD, dev);
    cstwin::topK(dev, T, k, idx);
  }
  static void quantiseGather(Napi::Env, const float* l, const int32_t* perm, int n, float step, int16_t* sym) { cstwin::quantiseGather(l, perm, n, step, sym); }
  static void scatterDequantise(Napi::Env, const int16_t* sym, const int32_t* perm, int n, int ps, const uint8_t* rec, int, float step, float* l) {
    cstwin::scatterDequantise(sym, perm, n, ps, rec, step, l);
  }
};

#ifdef CAMSTREAM_WITH_CUDA
#define GPU_CALL(env, what, call) Check(env, csgpu::call, what)
#else
#define GPU_CALL(env, what, call) (void)env  // unreachable: ready() has thrown
#endif

struct Gpu {
  static void ready(Napi::Env env) {
    const std::string why = GpuUnavailable();
    if (!why.empty()) throw Napi::Error::New(env, "CUDA unavailable: " + why);
  }
  static void halfResRgb(Napi::Env env, const uint8_t* yuv, int w, int h, float* out) { GPU_CALL(env, "halfResRgb", halfResRgb(yuv, w, h, out)); }
  static void reduceToMacroblocks(Napi::Env env, const float* g, int S, int w, int h, bool mean, float* out) {
    GPU_CALL(env, "reduceToMacroblocks", reduceToMacroblocks(g, S, w, h, mean, out));
  }
  static void saliencyToFrame(Napi::Env env, const float* g, int S, int w, int h, float* out) { GPU_CALL(env, "saliencyToFrame", saliencyToFrame(g, S, w, h, out)); }
  static void frameDiffPerMb(Napi::Env env, const uint8_t* a, const uint8_t* b, int w, int h, bool rgb, const float* wt, bool mean, float* out) {
    GPU_CALL(env, "frameDiffPerMb", frameDiffPerMb(a, b, w, h, rgb, wt, mean, out));
  }
  static void planePerMb(Napi::Env env, const float* plane, int w, int h, bool mean, float* out) { GPU_CALL(env, "planePerMb", planePerMb(plane, w, h, mean, out)); }
  static void importanceMask(Napi::Env env, const float* p, int rows, int cols, double thr, bool smooth, uint8_t* out) {
    GPU_CALL(env, "importanceMask", importanceMask(p, rows, cols, thr, smooth, out));
  }
  static void letterboxBatch(Napi::Env env, const uint8_t* yuv, size_t bytes, const int32_t* dims, int n, int S, bool bgr, float* out) {
    GPU_CALL(env, "letterboxBatch", letterboxBatch(yuv, bytes, dims, n, S, bgr, out));
  }
  static void ropeDelta(Napi::Env env, float* k, const int32_t* delta, int T, int H, int D, double base) { GPU_CALL(env, "ropeDelta", ropeDelta(k, delta, T, H, D, base)); }
  static void tokenDeviationTopK(Napi::Env env, const float* a, const float* b, int T, int HD, int k, float* dev, int32_t* idx) {
    GPU_CALL(env, "tokenDeviationTopK", tokenDeviationTopK(a, b, T, HD, k, dev, idx));
  }
  static void quantiseGather(Napi::Env env, const float* l, const int32_t* perm, int n, float step, int16_t* sym) {
    GPU_CALL(env, "quantiseGather", quantiseGather(l, perm, n, step, sym));
  }
  static void scatterDequantise(Napi::Env env, const int16_t* sym, const int32_t* perm, int n, int ps, const uint8_t* rec, int packets, float step, float* l) {
    GPU_CALL(env, "scatterDequantise", scatterDequantise(sym, perm, n, ps, rec, packets, step, l));
  }
};

// ---- bindings of the kernels only this addon has ---------------------------------------------------

size_t Len(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsTypedArray()) throw Napi::TypeError::New(info.Env(), std::string(name) + ": wrong array type");
  return info[i].As<Napi::TypedArray>().ElementLength();
}

float Step(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsNumber() || !(info[i].As<Napi::Number>().FloatValue() > 0)) throw Napi::RangeError::New(info.Env(), "step must be > 0");
  return info[i].As<Napi::Number>().FloatValue();
}

// letterboxBatch(yuv, dims Int32Array[2n], S, bgr, out[n·3·S·S])
template <class B>
Napi::Value LetterboxBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  B::ready(env);
  const size_t nd = Len(info, 1, "dims");
  if (nd % 2) throw Napi::RangeError::New(env, "dims must hold width,height pairs");
  const int n = static_cast<int>(nd / 2);
  const int32_t* dims = Arr<int32_t>(info, 1, napi_int32_array, nd, "dims");
  size_t bytes = 0;
  for (int i = 0; i < n; i++) {
    const int w = dims[2 * i], h = dims[2 * i + 1];
    if (w < 2 || h < 2 || w > kMaxDim || h > kMaxDim || ((w | h) & 1)) throw Napi::RangeError::New(env, "frame " + std::to_string(i) + ": bad size");
    bytes += YuvSize(w, h);
  }
  const uint8_t* yuv = Arr<uint8_t>(info, 0, napi_uint8_array, bytes, "yuv");
  const int S = Int(info, 2, 1, 4096, "inputSize");
  float* out = Arr<float>(info, 4, napi_float32_array, static_cast<size_t>(n) * 3 * S * S, "out");
  B::letterboxBatch(env, yuv, bytes, dims, n, S, Bool(info, 3), out);
  return env.Undefined();
}

// ropeDelta(keys Float32Array[T·H·D] in place, delta Int32Array[T], H, D, base)
template <class B>
Napi::Value RopeDelta(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  B::ready(env);
  const int H = Int(info, 2, 1, 1 << 16, "heads"), D = Int(info, 3, 2, 1 << 16, "headDim");
  if (D % 2) throw Napi::RangeError::New(env, "headDim must be even");
  const size_t T = Len(info, 1, "delta");
  const int32_t* delta = Arr<int32_t>(info, 1, napi_int32_array, T, "delta");
  float* k = Arr<float>(info, 0, napi_float32_array, T * H * D, "keys");
  if (!info[4].IsNumber() || !(info[4].As<Napi::Number>().DoubleValue() > 1)) throw Napi::RangeError::New(env, "base must be a number > 1");
  B::ropeDelta(env, k, delta, static_cast<int>(T), H, D, info[4].As<Napi::Number>().DoubleValue());
  return env.Undefined();
}

// tokenDeviationTopK(a, b Float32Array[T·HD], T, k, dev Float32Array[T], idx Int32Array[min(k,T)])
template <class B>
Napi::Value TokenDeviationTopK(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  B::ready(env);
  const int T = Int(info, 2, 1, 1 << 24, "tokens");
  const int k = std::min(T, Int(info, 3, 0, 1 << 24, "k"));
  const size_t len = Len(info, 0, "a");
  if (len % T) throw Napi::RangeError::New(env, "a must hold tokens × (heads·headDim) values");
  const float* a = Arr<float>(info, 0, napi_float32_array, len, "a");
  const float* b = Arr<float>(info, 1, napi_float32_array, len, "b");
  float* dev = Arr<float>(info, 4, napi_float32_array, T, "dev");
  int32_t* idx = Arr<int32_t>(info, 5, napi_int32_array, k, "idx");
  B::tokenDeviationTopK(env, a, b, T, static_cast<int>(len / T), k, dev, idx);
  return env.Undefined();
}

const int32_t* Perm(const Napi::CallbackInfo& info, size_t i, int n) {
  const int32_t* perm = Arr<int32_t>(info, i, napi_int32_array, n, "perm");
  const std::string bad = cstwin::checkPermutation(perm, n);
  if (!bad.empty()) throw Napi::RangeError::New(info.Env(), bad);
  return perm;
}

// quantiseGather(latent Float32Array[n], perm Int32Array[n], step, symbols Int16Array[n])
template <class B>
Napi::Value QuantiseGather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  B::ready(env);
  const int n = static_cast<int>(Len(info, 0, "latent"));
  const float* latent = Arr<float>(info, 0, napi_float32_array, n, "latent");
  const int32_t* perm = Perm(info, 1, n);
  const float step = Step(info, 2);
  B::quantiseGather(env, latent, perm, n, step, Arr<int16_t>(info, 3, napi_int16_array, n, "symbols"));
  return env.Undefined();
}

// scatterDequantise(symbols Int16Array[n], perm Int32Array[n], packetSize, received Uint8Array[ceil(n/packetSize)], step, latent Float32Array[n])
template <class B>
Napi::Value ScatterDequantise(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  B::ready(env);
  const int n = static_cast<int>(Len(info, 0, "symbols"));
  const int16_t* sym = Arr<int16_t>(info, 0, napi_int16_array, n, "symbols");
  const int32_t* perm = Perm(info, 1, n);
  const int ps = Int(info, 2, 1, 1 << 30, "packetSize");
  const int packets = (n + ps - 1) / ps;
  const uint8_t* rec = Arr<uint8_t>(info, 3, napi_uint8_array, packets, "received");
  const float step = Step(info, 4);
  B::scatterDequantise(env, sym, perm, n, ps, rec, packets, step, Arr<float>(info, 5, napi_float32_array, n, "latent"));
  return env.Undefined();
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
#ifdef CAMSTREAM_WITH_CUDA
  const csgpu::DeviceInfo d = csgpu::deviceInfo();
  o.Set("cuda", true);
  o.Set("devices", d.count);
  o.Set("error", d.error.empty() ? env.Null() : Napi::String::New(env, d.error));
  o.Set("name", d.name.empty() ? env.Null() : Napi::String::New(env, d.name));
  o.Set("computeCapability", d.count ? Napi::String::New(env, std::to_string(d.major) + "." + std::to_string(d.minor)) : env.Null());
  o.Set("memoryGiB", d.count ? Napi::Number::New(env, d.memoryGiB) : env.Null());
  o.Set("runtimeVersion", d.runtimeVersion);
  o.Set("driverVersion", d.driverVersion);
#else
  o.Set("cuda", false);
  o.Set("devices", 0);
  o.Set("error", GpuUnavailable());
  o.Set("name", env.Null());
  o.Set("computeCapability", env.Null());
  o.Set("memoryGiB", env.Null());
  o.Set("runtimeVersion", 0);
  o.Set("driverVersion", 0);
#endif
  o.Set("archs", CAMSTREAM_CUDA_ARCHS);
  return o;
}

template <class B>
Napi::Object Table(Napi::Env env) {
  Napi::Object t = Napi::Object::New(env);
  SetFrameKernels<B>(env, t);
  t.Set("letterboxBatch", Napi::Function::New(env, LetterboxBatch<B>));
  t.Set("ropeDelta", Napi::Function::New(env, RopeDelta<B>));
  t.Set("tokenDeviationTopK", Napi::Function::New(env, TokenDeviationTopK<B>));
  t.Set("quantiseGather", Napi::Function::New(env, QuantiseGather<B>));
  t.Set("scatterDequantise", Napi::Function::New(env, ScatterDequantise<B>));
  return t;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  exports.Set("cpu", Table<Cpu>(env));
  exports.Set("gpu", Table<Gpu>(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(camstream_cuda, Init)
