// Node-API bindings of the hot loops in kernels.h. Synchronous (each call is well under a millisecond);
// outputs are typed arrays allocated by the caller (encoder/kernels.ts). Every length is checked here
// again, so a wrong call throws RangeError/TypeError instead of touching memory it does not own.
#include <napi.h>

#include <string>
#include <vector>

#include "kernels.h"

namespace {

template <typename T>
T* Arr(const Napi::CallbackInfo& info, size_t i, napi_typedarray_type type, size_t minLen, const char* name) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != type)
    throw Napi::TypeError::New(env, std::string(name) + ": wrong array type");
  Napi::TypedArray a = info[i].As<Napi::TypedArray>();
  if (a.ElementLength() < minLen)
    throw Napi::RangeError::New(env, std::string(name) + ": " + std::to_string(a.ElementLength()) + " elements, need " + std::to_string(minLen));
  return reinterpret_cast<T*>(static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset());
}

int Int(const Napi::CallbackInfo& info, size_t i, int lo, int hi, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  const double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= lo && v <= hi) || v != static_cast<int>(v))
    throw Napi::RangeError::New(info.Env(), std::string(name) + " out of range");
  return static_cast<int>(v);
}

bool Bool(const Napi::CallbackInfo& info, size_t i) { return info.Length() > i && info[i].ToBoolean().Value(); }

size_t YuvSize(int w, int h) { return static_cast<size_t>(w) * h + 2 * static_cast<size_t>(w >> 1) * (h >> 1); }
constexpr int kMaxDim = 16384;

void EvenDims(const Napi::CallbackInfo& info, int w, int h) {
  if ((w | h) & 1) throw Napi::RangeError::New(info.Env(), "frame size must be even");
}

// letterbox(yuv, w, h, S, bgr, out[3·S·S])
Napi::Value Letterbox(const Napi::CallbackInfo& info) {
  const int w = Int(info, 1, 2, kMaxDim, "width"), h = Int(info, 2, 2, kMaxDim, "height"), S = Int(info, 3, 1, 4096, "inputSize");
  EvenDims(info, w, h);
  const uint8_t* yuv = Arr<uint8_t>(info, 0, napi_uint8_array, YuvSize(w, h), "yuv");
  float* out = Arr<float>(info, 5, napi_float32_array, 3 * static_cast<size_t>(S) * S, "out");
  cskern::letterbox(yuv, w, h, S, Bool(info, 4), out);
  return info.Env().Undefined();
}

// halfResRgb(yuv, w, h, out[3·rows·8·cols·8])
Napi::Value HalfResRgb(const Napi::CallbackInfo& info) {
  const int w = Int(info, 1, 2, kMaxDim, "width"), h = Int(info, 2, 2, kMaxDim, "height");
  EvenDims(info, w, h);
  const uint8_t* yuv = Arr<uint8_t>(info, 0, napi_uint8_array, YuvSize(w, h), "yuv");
  float* out = Arr<float>(info, 3, napi_float32_array, 3 * static_cast<size_t>(cskern::mbRows(h) * 8) * cskern::mbCols(w) * 8, "out");
  cskern::halfResRgb(yuv, w, h, out);
  return info.Env().Undefined();
}

// reduceToMacroblocks(grad[3·S·S], S, frameW, frameH, mean, out[rows·cols])
Napi::Value ReduceToMacroblocks(const Napi::CallbackInfo& info) {
  const int S = Int(info, 1, 1, 4096, "inputSize"), w = Int(info, 2, 1, kMaxDim, "frameW"), h = Int(info, 3, 1, kMaxDim, "frameH");
  const float* g = Arr<float>(info, 0, napi_float32_array, 3 * static_cast<size_t>(S) * S, "grad");
  float* out = Arr<float>(info, 5, napi_float32_array, static_cast<size_t>(cskern::mbRows(h)) * cskern::mbCols(w), "out");
  cskern::reduceToMacroblocks(g, cskern::letterboxFor(w, h, S), w, h, Bool(info, 4), out);
  return info.Env().Undefined();
}

// saliencyToFrame(grad[3·S·S], S, frameW, frameH, out[frameW·frameH])
Napi::Value SaliencyToFrame(const Napi::CallbackInfo& info) {
  const int S = Int(info, 1, 1, 4096, "inputSize"), w = Int(info, 2, 1, kMaxDim, "frameW"), h = Int(info, 3, 1, kMaxDim, "frameH");
  const float* g = Arr<float>(info, 0, napi_float32_array, 3 * static_cast<size_t>(S) * S, "grad");
  float* out = Arr<float>(info, 4, napi_float32_array, static_cast<size_t>(w) * h, "out");
  cskern::saliencyToFrame(g, cskern::letterboxFor(w, h, S), w, h, out);
  return info.Env().Undefined();
}

// weightByPixelDiff(saliency|null, hq, lq, w, h, mean, out[rows·cols])
Napi::Value WeightByPixelDiff(const Napi::CallbackInfo& info) {
  const int w = Int(info, 3, 2, kMaxDim, "width"), h = Int(info, 4, 2, kMaxDim, "height");
  EvenDims(info, w, h);
  const float* sal = info[0].IsNull() || info[0].IsUndefined() ? nullptr : Arr<float>(info, 0, napi_float32_array, static_cast<size_t>(w) * h, "saliency");
  const uint8_t* a = Arr<uint8_t>(info, 1, napi_uint8_array, YuvSize(w, h), "hq");
  const uint8_t* b = Arr<uint8_t>(info, 2, napi_uint8_array, YuvSize(w, h), "lq");
  float* out = Arr<float>(info, 6, napi_float32_array, static_cast<size_t>(cskern::mbRows(h)) * cskern::mbCols(w), "out");
  cskern::weightByPixelDiff(sal, a, b, w, h, Bool(info, 5), out);
  return info.Env().Undefined();
}

// rgbErrorPerMb(x, ref, w, h, out[rows·cols])
Napi::Value RgbErrorPerMb(const Napi::CallbackInfo& info) {
  const int w = Int(info, 2, 2, kMaxDim, "width"), h = Int(info, 3, 2, kMaxDim, "height");
  EvenDims(info, w, h);
  const uint8_t* a = Arr<uint8_t>(info, 0, napi_uint8_array, YuvSize(w, h), "x");
  const uint8_t* b = Arr<uint8_t>(info, 1, napi_uint8_array, YuvSize(w, h), "ref");
  float* out = Arr<float>(info, 4, napi_float32_array, static_cast<size_t>(cskern::mbRows(h)) * cskern::mbCols(w), "out");
  cskern::rgbErrorPerMb(a, b, w, h, out);
  return info.Env().Undefined();
}

// importanceMask(p[rows·cols], rows, cols, threshold, smooth, out[rows·cols])
Napi::Value ImportanceMask(const Napi::CallbackInfo& info) {
  const int rows = Int(info, 1, 0, 65535, "rows"), cols = Int(info, 2, 0, 65535, "cols");
  const size_t n = static_cast<size_t>(rows) * cols;
  const float* p = Arr<float>(info, 0, napi_float32_array, n, "p");
  if (info.Length() <= 3 || !info[3].IsNumber()) throw Napi::TypeError::New(info.Env(), "threshold must be a number");
  const double thr = info[3].As<Napi::Number>().DoubleValue();
  uint8_t* out = Arr<uint8_t>(info, 5, napi_uint8_array, n, "out");
  std::vector<uint8_t> scratch(3 * n);
  cskern::importanceMask(p, rows, cols, thr, Bool(info, 4), out, scratch.data());
  return info.Env().Undefined();
}

}  // namespace

// Called from the addon's Init (camstream_encoder.cc).
void RegisterKernels(Napi::Env env, Napi::Object exports) {
  Napi::Object k = Napi::Object::New(env);
  k.Set("letterbox", Napi::Function::New(env, Letterbox, "letterbox"));
  k.Set("halfResRgb", Napi::Function::New(env, HalfResRgb, "halfResRgb"));
  k.Set("reduceToMacroblocks", Napi::Function::New(env, ReduceToMacroblocks, "reduceToMacroblocks"));
  k.Set("saliencyToFrame", Napi::Function::New(env, SaliencyToFrame, "saliencyToFrame"));
  k.Set("weightByPixelDiff", Napi::Function::New(env, WeightByPixelDiff, "weightByPixelDiff"));
  k.Set("rgbErrorPerMb", Napi::Function::New(env, RgbErrorPerMb, "rgbErrorPerMb"));
  k.Set("importanceMask", Napi::Function::New(env, ImportanceMask, "importanceMask"));
  exports.Set("kernels", k);
}
