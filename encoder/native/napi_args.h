// Argument checks shared by the Node-API bindings (encoder/native/kernels_napi.cc, native-cuda/addon.cc):
// typed arrays of the right element type and at least the length the kernel will touch, bounded ints.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>

namespace csnapi {

template <typename T>
inline T* Arr(const Napi::CallbackInfo& info, size_t i, napi_typedarray_type type, size_t minLen, const char* name) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != type)
    throw Napi::TypeError::New(env, std::string(name) + ": wrong array type");
  Napi::TypedArray a = info[i].As<Napi::TypedArray>();
  if (a.ElementLength() < minLen)
    throw Napi::RangeError::New(env, std::string(name) + ": " + std::to_string(a.ElementLength()) + " elements, need " + std::to_string(minLen));
  return reinterpret_cast<T*>(static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset());
}

inline int Int(const Napi::CallbackInfo& info, size_t i, int lo, int hi, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  const double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= lo && v <= hi) || v != static_cast<int>(v))
    throw Napi::RangeError::New(info.Env(), std::string(name) + " out of range");
  return static_cast<int>(v);
}

inline bool Bool(const Napi::CallbackInfo& info, size_t i) { return info.Length() > i && info[i].ToBoolean().Value(); }

inline size_t YuvSize(int w, int h) { return static_cast<size_t>(w) * h + 2 * static_cast<size_t>(w >> 1) * (h >> 1); }
constexpr int kMaxDim = 16384;

inline void EvenDims(const Napi::CallbackInfo& info, int w, int h) {
  if ((w | h) & 1) throw Napi::RangeError::New(info.Env(), "frame size must be even");
}

}  // namespace csnapi
