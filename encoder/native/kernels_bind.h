// Node-API bindings of the frame kernels, written once for any backend: the encoder addon binds them to
// the C++ kernels (CpuFrameKernels below), native-cuda binds them to both the C++ twins and CUDA.
// A backend B provides ready(env) (throws when it cannot run) and the functions named below, which
// throw a JS error on failure. Arguments are checked here, so no backend sees a short buffer.
#pragma once
#include <napi.h>

#include <vector>

#include "kernels.h"
#include "napi_args.h"

namespace csnapi {

struct CpuFrameKernels {
  static void ready(Napi::Env) {}
  static void halfResRgb(Napi::Env, const uint8_t* yuv, int w, int h, float* out) { cskern::halfResRgb(yuv, w, h, out); }
  static void reduceToMacroblocks(Napi::Env, const float* g, int S, int w, int h, bool mean, float* out) {
    cskern::reduceToMacroblocks(g, cskern::letterboxFor(w, h, S), w, h, mean, out);
  }
  static void saliencyToFrame(Napi::Env, const float* g, int S, int w, int h, float* out) {
    cskern::saliencyToFrame(g, cskern::letterboxFor(w, h, S), w, h, out);
  }
  static void weightByPixelDiff(Napi::Env, const float* sal, const uint8_t* a, const uint8_t* b, int w, int h, bool mean, float* out) {
    cskern::weightByPixelDiff(sal, a, b, w, h, mean, out);
  }
  static void rgbErrorPerMb(Napi::Env, const uint8_t* a, const uint8_t* b, int w, int h, float* out) { cskern::rgbErrorPerMb(a, b, w, h, out); }
  static void importanceMask(Napi::Env, const float* p, int rows, int cols, double thr, bool smooth, uint8_t* out) {
    std::vector<uint8_t> scratch(3 * static_cast<size_t>(rows) * cols);
    cskern::importanceMask(p, rows, cols, thr, smooth, out, scratch.data());
  }
};

inline size_t MbCount(int w, int h) { return static_cast<size_t>(cskern::mbRows(h)) * cskern::mbCols(w); }

// halfResRgb(yuv, w, h, out[3·rows·8·cols·8])
template <class B>
Napi::Value HalfResRgb(const Napi::CallbackInfo& info) {
  B::ready(info.Env());
  const int w = Int(info, 1, 2, kMaxDim, "width"), h = Int(info, 2, 2, kMaxDim, "height");
  EvenDims(info, w, h);
  const uint8_t* yuv = Arr<uint8_t>(info, 0, napi_uint8_array, YuvSize(w, h), "yuv");
  float* out = Arr<float>(info, 3, napi_float32_array, 3 * static_cast<size_t>(cskern::mbRows(h) * 8) * cskern::mbCols(w) * 8, "out");
  B::halfResRgb(info.Env(), yuv, w, h, out);
  return info.Env().Undefined();
}

// reduceToMacroblocks(grad[3·S·S], S, frameW, frameH, mean, out[rows·cols])
template <class B>
Napi::Value ReduceToMacroblocks(const Napi::CallbackInfo& info) {
  B::ready(info.Env());
  const int S = Int(info, 1, 1, 4096, "inputSize"), w = Int(info, 2, 1, kMaxDim, "frameW"), h = Int(info, 3, 1, kMaxDim, "frameH");
  const float* g = Arr<float>(info, 0, napi_float32_array, 3 * static_cast<size_t>(S) * S, "grad");
  float* out = Arr<float>(info, 5, napi_float32_array, MbCount(w, h), "out");
  B::reduceToMacroblocks(info.Env(), g, S, w, h, Bool(info, 4), out);
  return info.Env().Undefined();
}

// saliencyToFrame(grad[3·S·S], S, frameW, frameH, out[frameW·frameH])
template <class B>
Napi::Value SaliencyToFrame(const Napi::CallbackInfo& info) {
  B::ready(info.Env());
  const int S = Int(info, 1, 1, 4096, "inputSize"), w = Int(info, 2, 1, kMaxDim, "frameW"), h = Int(info, 3, 1, kMaxDim, "frameH");
  const float* g = Arr<float>(info, 0, napi_float32_array, 3 * static_cast<size_t>(S) * S, "grad");
  float* out = Arr<float>(info, 4, napi_float32_array, static_cast<size_t>(w) * h, "out");
  B::saliencyToFrame(info.Env(), g, S, w, h, out);
  return info.Env().Undefined();
}

// weightByPixelDiff(saliency|null, hq, lq, w, h, mean, out[rows·cols])
template <class B>
Napi::Value WeightByPixelDiff(const Napi::CallbackInfo& info) {
  B::ready(info.Env());
  const int w = Int(info, 3, 2, kMaxDim, "width"), h = Int(info, 4, 2, kMaxDim, "height");
  EvenDims(info, w, h);
  const float* sal = info[0].IsNull() || info[0].IsUndefined() ? nullptr : Arr<float>(info, 0, napi_float32_array, static_cast<size_t>(w) * h, "saliency");
  const uint8_t* a = Arr<uint8_t>(info, 1, napi_uint8_array, YuvSize(w, h), "hq");
  const uint8_t* b = Arr<uint8_t>(info, 2, napi_uint8_array, YuvSize(w, h), "lq");
  float* out = Arr<float>(info, 6, napi_float32_array, MbCount(w, h), "out");
  B::weightByPixelDiff(info.Env(), sal, a, b, w, h, Bool(info, 5), out);
  return info.Env().Undefined();
}

// rgbErrorPerMb(x, ref, w, h, out[rows·cols])
template <class B>
Napi::Value RgbErrorPerMb(const Napi::CallbackInfo& info) {
  B::ready(info.Env());
  const int w = Int(info, 2, 2, kMaxDim, "width"), h = Int(info, 3, 2, kMaxDim, "height");
  EvenDims(info, w, h);
  const uint8_t* a = Arr<uint8_t>(info, 0, napi_uint8_array, YuvSize(w, h), "x");
  const uint8_t* b = Arr<uint8_t>(info, 1, napi_uint8_array, YuvSize(w, h), "ref");
  float* out = Arr<float>(info, 4, napi_float32_array, MbCount(w, h), "out");
  B::rgbErrorPerMb(info.Env(), a, b, w, h, out);
  return info.Env().Undefined();
}

// importanceMask(p[rows·cols], rows, cols, threshold, smooth, out[rows·cols])
template <class B>
Napi::Value ImportanceMask(const Napi::CallbackInfo& info) {
  B::ready(info.Env());
  const int rows = Int(info, 1, 0, 65535, "rows"), cols = Int(info, 2, 0, 65535, "cols");
  const size_t n = static_cast<size_t>(rows) * cols;
  const float* p = Arr<float>(info, 0, napi_float32_array, n, "p");
  if (info.Length() <= 3 || !info[3].IsNumber()) throw Napi::TypeError::New(info.Env(), "threshold must be a number");
  const double thr = info[3].As<Napi::Number>().DoubleValue();
  uint8_t* out = Arr<uint8_t>(info, 5, napi_uint8_array, n, "out");
  B::importanceMask(info.Env(), p, rows, cols, thr, Bool(info, 4), out);
  return info.Env().Undefined();
}

template <class B>
void SetFrameKernels(Napi::Env env, Napi::Object t) {
  t.Set("halfResRgb", Napi::Function::New(env, HalfResRgb<B>, "halfResRgb"));
  t.Set("reduceToMacroblocks", Napi::Function::New(env, ReduceToMacroblocks<B>, "reduceToMacroblocks"));
  t.Set("saliencyToFrame", Napi::Function::New(env, SaliencyToFrame<B>, "saliencyToFrame"));
  t.Set("weightByPixelDiff", Napi::Function::New(env, WeightByPixelDiff<B>, "weightByPixelDiff"));
  t.Set("rgbErrorPerMb", Napi::Function::New(env, RgbErrorPerMb<B>, "rgbErrorPerMb"));
  t.Set("importanceMask", Napi::Function::New(env, ImportanceMask<B>, "importanceMask"));
}

}  // namespace csnapi
