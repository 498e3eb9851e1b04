// Node-API bindings of the hot loops in kernels.h, as exports.kernels. Synchronous (each call is well
// under a millisecond); outputs are typed arrays allocated by the caller (encoder/kernels.ts). Every
// length is checked here again, so a wrong call throws RangeError/TypeError instead of touching memory
// it does not own.
#include <napi.h>

#include "kernels.h"
#include "kernels_bind.h"
#include "napi_args.h"

namespace {

using namespace csnapi;

// letterbox(yuv, w, h, S, bgr, out[3·S·S])
Napi::Value Letterbox(const Napi::CallbackInfo& info) {
  const int w = Int(info, 1, 2, kMaxDim, "width"), h = Int(info, 2, 2, kMaxDim, "height"), S = Int(info, 3, 1, 4096, "inputSize");
  EvenDims(info, w, h);
  const uint8_t* yuv = Arr<uint8_t>(info, 0, napi_uint8_array, YuvSize(w, h), "yuv");
  float* out = Arr<float>(info, 5, napi_float32_array, 3 * static_cast<size_t>(S) * S, "out");
  cskern::letterbox(yuv, w, h, S, Bool(info, 4), out);
  return info.Env().Undefined();
}

// useSimd(enable) → "avx2" | "portable": which loops the kernels run (kernels.h); the tests check both
Napi::Value UseSimd(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), cskern::useSimd(Bool(info, 0))); }

}  // namespace

// Called from the addon's Init (camstream_encoder.cc).
void RegisterKernels(Napi::Env env, Napi::Object exports) {
  Napi::Object k = Napi::Object::New(env);
  k.Set("letterbox", Napi::Function::New(env, Letterbox, "letterbox"));
  k.Set("useSimd", Napi::Function::New(env, UseSimd, "useSimd"));
  csnapi::SetFrameKernels<csnapi::CpuFrameKernels>(env, k);
  exports.Set("kernels", k);
}
