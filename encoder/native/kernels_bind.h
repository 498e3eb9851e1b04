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
  static void frameDiffPerMb(Napi::Env, const uint8_t* a, const uint8_t* b, int w, int h, bool rgb, const float* wt, bool mean, float* out) {
    cskern::frameDiffPerMb(a, b, w, h, rgb, wt, mean, out);
  }
  static void planePerMb(Napi::Env, const float* plane, int w, int h, bool mean, float* out) { cskern::planePerMb(plane, w, h, mean, out); }
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

// frameDiffPerMb(a, b, w, h, rgb, weight|null, mean, out[rows·cols])
template <class B>
Napi::Value FrameDiffPerMb(const Napi::CallbackInfo& info) {
  B::ready(info.Env());
  const int w = Int(info, 2, 2, kMaxDim, "width"), h = Int(info, 3, 2, kMaxDim, "height");
  EvenDims(info, w, h);
  const uint8_t* a = Arr<uint8_t>(info, 0, napi_uint8_array, YuvSize(w, h), "a");
  const uint8_t* b = Arr<uint8_t>(info, 1, napi_uint8_array, YuvSize(w, h), "b");
  const float* wt = info[5].IsNull() || info[5].IsUndefined() ? nullptr : Arr<float>(info, 5, napi_float32_array, static_cast<size_t>(w) * h, "weight");
  float* out = Arr<float>(info, 7, napi_float32_array, MbCount(w, h), "out");
  B::frameDiffPerMb(info.Env(), a, b, w, h, Bool(info, 4), wt, Bool(info, 6), out);
  return info.Env().Undefined();
}

// planePerMb(plane[w·h], w, h, mean, out[rows·cols])
template <class B>
Napi::Value PlanePerMb(const Napi::CallbackInfo& info) {
  B::ready(info.Env());
  const int w = Int(info, 1, 1, kMaxDim, "width"), h = Int(info, 2, 1, kMaxDim, "height");
  const float* plane = Arr<float>(info, 0, napi_float32_array, static_cast<size_t>(w) * h, "plane");
  float* out = Arr<float>(info, 4, napi_float32_array, MbCount(w, h), "out");
  B::planePerMb(info.Env(), plane, w, h, Bool(info, 3), out);
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
  t.Set("frameDiffPerMb", Napi::Function::New(env, FrameDiffPerMb<B>, "frameDiffPerMb"));
  t.Set("planePerMb", Napi::Function::New(env, PlanePerMb<B>, "planePerMb"));
  t.Set("importanceMask", Napi::Function::New(env, ImportanceMask<B>, "importanceMask"));
}

}  // namespace csnapi
