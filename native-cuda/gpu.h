// Host launchers of the CUDA kernels (kernels.cu). Host pointers in, host pointers out: each call copies
// its inputs to the device, runs, copies the result back and synchronises. Every launcher returns ""
// on success or the CUDA error text. Arguments are validated by the caller (addon.cc) beforehand.
#pragma once
#include <cstdint>
#include <string>

namespace csgpu {

struct DeviceInfo {
  int count = 0;       // CUDA devices visible
  std::string error;   // why count is 0 (cudaGetDeviceCount's error), "" otherwise
  std::string name;    // device 0
  int major = 0, minor = 0;
  double memoryGiB = 0;
  int runtimeVersion = 0, driverVersion = 0;
};
DeviceInfo deviceInfo();

std::string letterboxBatch(const uint8_t* yuv, size_t yuvBytes, const int32_t* dims, int n, int S, bool bgr, float* out);
std::string halfResRgb(const uint8_t* yuv, int w, int h, float* out);
std::string reduceToMacroblocks(const float* grad, int S, int frameW, int frameH, bool mean, float* out);
std::string saliencyToFrame(const float* grad, int S, int frameW, int frameH, float* out);
std::string frameDiffPerMb(const uint8_t* a, const uint8_t* b, int w, int h, bool rgb, const float* weight, bool mean, float* out);
std::string planePerMb(const float* plane, int w, int h, bool mean, float* out);
std::string importanceMask(const float* p, int rows, int cols, double threshold, bool smooth, uint8_t* out);
std::string ropeDelta(float* k, const int32_t* delta, int T, int H, int D, double base);
// deviation per token and the indices of the k largest (ties: lower index first), on the device
std::string tokenDeviationTopK(const float* a, const float* b, int T, int HD, int k, float* dev, int32_t* idx);
std::string quantiseGather(const float* latent, const int32_t* perm, int n, float step, int16_t* symbols);
std::string scatterDequantise(const int16_t* symbols, const int32_t* perm, int n, int packetSize, const uint8_t* received,
                              int packets, float step, float* latent);

}  // namespace csgpu
