// camstream_encoder: H.264/H.265 segment encoder with a per-frame, per-macroblock QP map,
// a decoder that reads back the per-macroblock QPs, and a libswscale resizer.
//
// The QP map travels as AV_FRAME_DATA_REGIONS_OF_INTEREST side data on every AVFrame
// (one region per 16x16 macroblock); libavcodec's libx264 wrapper turns it into
// x264 quant_offsets. Encode, decode and scaleAsync run on the libuv thread pool (AsyncWorker)
// and settle a Promise; scale() is the synchronous twin for worker threads and tests.

#include <napi.h>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavutil/error.h>
#include <libavutil/frame.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libavutil/video_enc_params.h>
#include <libswscale/swscale.h>
}

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

// kernels_napi.cc: the hot-loop kernels (kernels.h) as exports.kernels
void RegisterKernels(Napi::Env env, Napi::Object exports);

namespace {

constexpr int kMb = 16;
// largest frame side scale() accepts (the protocol's is 8192): keeps every plane offset far from int overflow
constexpr int kMaxScaleDim = 16384;

// ---------------------------------------------------------------- errors

struct AvFailure {
  std::string step;
  std::string message;
};

std::string AvErrText(int err) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(err, buf, sizeof buf);
  return buf;
}

[[noreturn]] void Fail(const std::string& step, int err) {
  throw AvFailure{step, step + ": " + AvErrText(err)};
}
[[noreturn]] void Fail(const std::string& step, const std::string& msg) {
  throw AvFailure{step, step + ": " + msg};
}
void Check(int ret, const char* step) {
  if (ret < 0) Fail(step, ret);
}

Napi::Value MakeJsError(Napi::Env env, const AvFailure& f) {
  Napi::Error e = Napi::Error::New(env, f.message);
  e.Set("step", Napi::String::New(env, f.step));
  return e.Value();
}

// ---------------------------------------------------------------- RAII for libav objects

struct CodecCtxDel {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct FrameDel {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
struct PacketDel {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct ParserDel {
  void operator()(AVCodecParserContext* p) const { av_parser_close(p); }
};
struct SwsDel {
  void operator()(SwsContext* s) const { sws_freeContext(s); }
};
using CodecCtxPtr = std::unique_ptr<AVCodecContext, CodecCtxDel>;
using FramePtr = std::unique_ptr<AVFrame, FrameDel>;
using PacketPtr = std::unique_ptr<AVPacket, PacketDel>;
using ParserPtr = std::unique_ptr<AVCodecParserContext, ParserDel>;
using SwsPtr = std::unique_ptr<SwsContext, SwsDel>;

// Copies a contiguous YUV420p buffer (no padding) into an AVFrame's planes.
void FillFrame(AVFrame* f, const uint8_t* src, int w, int h) {
  const int cw = w / 2, ch = h / 2;
  const uint8_t* planes[3] = {src, src + w * h, src + w * h + cw * ch};
  const int widths[3] = {w, cw, cw};
  const int heights[3] = {h, ch, ch};
  for (int p = 0; p < 3; ++p) {
    for (int y = 0; y < heights[p]; ++y) {
      std::memcpy(f->data[p] + static_cast<ptrdiff_t>(y) * f->linesize[p], planes[p] + static_cast<size_t>(y) * widths[p],
                  widths[p]);
    }
  }
}

// Copies an AVFrame (yuv420p) into a contiguous buffer.
void ReadFrame(const AVFrame* f, uint8_t* dst) {
  const int w = f->width, h = f->height, cw = w / 2, ch = h / 2;
  uint8_t* planes[3] = {dst, dst + w * h, dst + w * h + cw * ch};
  const int widths[3] = {w, cw, cw};
  const int heights[3] = {h, ch, ch};
  for (int p = 0; p < 3; ++p) {
    for (int y = 0; y < heights[p]; ++y) {
      std::memcpy(planes[p] + static_cast<size_t>(y) * widths[p], f->data[p] + static_cast<ptrdiff_t>(y) * f->linesize[p],
                  widths[p]);
    }
  }
}

// ---------------------------------------------------------------- encode

struct EncodeSettings {
  std::string codec = "h264";  // h264 | h265
  double baseQp = 30;          // crf value
  std::string preset = "veryfast";
  std::string tune;  // "" or e.g. zerolatency
  int gop = 0;       // 0 = segment length
  int fps = 25;
  int bframes = 0;
  int threads = 0;  // 0 = auto
};

class EncodeWorker : public Napi::AsyncWorker {
 public:
  EncodeWorker(Napi::Env env, int width, int height, EncodeSettings s)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), w_(width), h_(height), s_(std::move(s)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  // Copies the frame (and map) here, on the main thread: a JS buffer may be transferred to a worker thread or
  // detached while the encode reads on the thread pool (a reference keeps the object alive, not its memory).
  void AddFrame(Napi::Uint8Array frame, Napi::Value map) {
    frameData_.emplace_back(frame.Data(), frame.Data() + frame.ByteLength());
    frames_.push_back(frameData_.back().data());  // inner buffers do not move when the outer vector grows
    if (map.IsTypedArray()) {
      Napi::Float32Array m = map.As<Napi::Float32Array>();
      mapData_.emplace_back(m.Data(), m.Data() + m.ElementLength());
      maps_.push_back(mapData_.back().data());
    } else {
      maps_.push_back(nullptr);
    }
  }

  void Execute() override {
    try {
      Run();
    } catch (const AvFailure& f) {
      failure_ = f;
      SetError(f.message);
    } catch (const std::exception& e) {
      failure_ = AvFailure{"encode", e.what()};
      SetError(e.what());
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object out = Napi::Object::New(env);
    out.Set("data", Napi::Buffer<uint8_t>::Copy(env, bytes_.data(), bytes_.size()));
    Napi::Array sizes = Napi::Array::New(env, frameBytes_.size());
    Napi::Array types = Napi::Array::New(env, frameTypes_.size());
    for (size_t i = 0; i < frameBytes_.size(); ++i) {
      sizes.Set(static_cast<uint32_t>(i), Napi::Number::New(env, frameBytes_[i]));
      types.Set(static_cast<uint32_t>(i), Napi::String::New(env, std::string(1, frameTypes_[i])));
    }
    out.Set("frameBytes", sizes);
    out.Set("frameTypes", types);
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error&) override { deferred_.Reject(MakeJsError(Env(), failure_)); }

 private:
  void Run() {
    const bool hevc = s_.codec == "h265";
    const char* encName = hevc ? "libx265" : "libx264";
    const AVCodec* codec = avcodec_find_encoder_by_name(encName);
    if (!codec) Fail("find encoder", std::string(encName) + " is not available in this libavcodec");

    CodecCtxPtr ctx(avcodec_alloc_context3(codec));
    if (!ctx) Fail("alloc encoder context", AVERROR(ENOMEM));
    const int n = static_cast<int>(frames_.size());
    const int gop = s_.gop > 0 ? s_.gop : n;
    ctx->width = w_;
    ctx->height = h_;
    ctx->pix_fmt = AV_PIX_FMT_YUV420P;
    ctx->time_base = AVRational{1, s_.fps};
    ctx->framerate = AVRational{s_.fps, 1};
    ctx->gop_size = gop;
    ctx->max_b_frames = s_.bframes;
    ctx->thread_count = s_.threads;
    ctx->flags |= AV_CODEC_FLAG_CLOSED_GOP;

    Check(av_opt_set(ctx->priv_data, "preset", s_.preset.c_str(), 0), "set preset");
    if (!s_.tune.empty()) Check(av_opt_set(ctx->priv_data, "tune", s_.tune.c_str(), 0), "set tune");
    // Near-constant base QP with exact per-MB offsets (see encoder/README.md). Pure CQP would
    // silently drop the ROI side data, as would aq-strength=0.
    char qp[32];
    std::snprintf(qp, sizeof qp, "%g", s_.baseQp);
    std::string params = std::string("crf=") + qp + ":qcomp=1:ipratio=1:pbratio=1:aq-mode=1:aq-strength=0.01:scenecut=0";
    params += hevc ? ":cutree=0:open-gop=0:log-level=error" : ":mbtree=0:open-gop=0";
    if (hevc) {
      char k[32];
      std::snprintf(k, sizeof k, ":keyint=%d:min-keyint=%d", gop, gop);
      params += k;
    }
    Check(av_opt_set(ctx->priv_data, hevc ? "x265-params" : "x264-params", params.c_str(), 0), "set codec params");

    Check(avcodec_open2(ctx.get(), codec, nullptr), "open encoder");

    FramePtr frame(av_frame_alloc());
    PacketPtr pkt(av_packet_alloc());
    if (!frame || !pkt) Fail("alloc frame", AVERROR(ENOMEM));
    frame->format = AV_PIX_FMT_YUV420P;
    frame->width = w_;
    frame->height = h_;

    const int rows = (h_ + kMb - 1) / kMb, cols = (w_ + kMb - 1) / kMb;
    for (int i = 0; i < n; ++i) {
      // A fresh buffer each time: the encoder may still reference the previous one.
      av_frame_unref(frame.get());
      frame->format = AV_PIX_FMT_YUV420P;
      frame->width = w_;
      frame->height = h_;
      Check(av_frame_get_buffer(frame.get(), 0), "alloc frame buffer");
      FillFrame(frame.get(), frames_[i], w_, h_);
      frame->pts = i;
      frame->pict_type = AV_PICTURE_TYPE_NONE;
      if (maps_[i]) AttachRoi(frame.get(), maps_[i], rows, cols);
      Check(avcodec_send_frame(ctx.get(), frame.get()), "send frame to encoder");
      Drain(ctx.get(), pkt.get());
    }
    Check(avcodec_send_frame(ctx.get(), nullptr), "flush encoder");
    Drain(ctx.get(), pkt.get());
  }

  void AttachRoi(AVFrame* f, const float* map, int rows, int cols) {
    const size_t count = static_cast<size_t>(rows) * cols;
    AVFrameSideData* sd = av_frame_new_side_data(f, AV_FRAME_DATA_REGIONS_OF_INTEREST, count * sizeof(AVRegionOfInterest));
    if (!sd) Fail("attach ROI side data", AVERROR(ENOMEM));
    auto* roi = reinterpret_cast<AVRegionOfInterest*>(sd->data);
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < cols; ++c) {
        AVRegionOfInterest& x = roi[static_cast<size_t>(r) * cols + c];
        x.self_size = sizeof(AVRegionOfInterest);
        x.top = r * kMb;
        x.bottom = std::min((r + 1) * kMb, h_);
        x.left = c * kMb;
        x.right = std::min((c + 1) * kMb, w_);
        // qoffset is a fraction of the QP range (51 for 8-bit): offset/51, in milli-QP steps.
        float off = map[static_cast<size_t>(r) * cols + c];
        if (!std::isfinite(off)) off = 0;
        off = std::clamp(off, -51.0f, 51.0f);
        x.qoffset = AVRational{static_cast<int>(std::lround(off * 1000.0f)), 51000};
      }
    }
  }

  void Drain(AVCodecContext* ctx, AVPacket* pkt) {
    for (;;) {
      int ret = avcodec_receive_packet(ctx, pkt);
      if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF) return;
      Check(ret, "receive packet from encoder");
      bytes_.insert(bytes_.end(), pkt->data, pkt->data + pkt->size);
      frameBytes_.push_back(pkt->size);
      char type = (pkt->flags & AV_PKT_FLAG_KEY) ? 'I' : 'P';
      size_t sdSize = 0;
      const uint8_t* stats = av_packet_get_side_data(pkt, AV_PKT_DATA_QUALITY_STATS, &sdSize);
      if (stats && sdSize >= 5) {
        // layout: u32le quality, u8 picture type, u8 error count, ...
        switch (stats[4]) {
          case AV_PICTURE_TYPE_I: type = 'I'; break;
          case AV_PICTURE_TYPE_P: type = 'P'; break;
          case AV_PICTURE_TYPE_B: type = 'B'; break;
          default: break;
        }
      }
      frameTypes_.push_back(type);
      av_packet_unref(pkt);
    }
  }

  Napi::Promise::Deferred deferred_;
  int w_, h_;
  EncodeSettings s_;
  std::vector<std::vector<uint8_t>> frameData_;
  std::vector<std::vector<float>> mapData_;
  std::vector<const uint8_t*> frames_;
  std::vector<const float*> maps_;
  std::vector<uint8_t> bytes_;
  std::vector<double> frameBytes_;
  std::vector<char> frameTypes_;
  AvFailure failure_;
};

// encode(frames: Uint8Array[], maps: (Float32Array|null)[], width, height, settings) -> Promise
Napi::Value Encode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[0].IsArray() || !info[1].IsArray() || !info[2].IsNumber() || !info[3].IsNumber() ||
      !info[4].IsObject()) {
    throw Napi::TypeError::New(env, "encode(frames, maps, width, height, settings)");
  }
  Napi::Array frames = info[0].As<Napi::Array>();
  Napi::Array maps = info[1].As<Napi::Array>();
  const int w = info[2].As<Napi::Number>().Int32Value();
  const int h = info[3].As<Napi::Number>().Int32Value();
  Napi::Object so = info[4].As<Napi::Object>();
  if (w <= 0 || h <= 0 || (w & 1) || (h & 1)) throw Napi::RangeError::New(env, "width and height must be positive and even");
  if (frames.Length() == 0) throw Napi::RangeError::New(env, "empty segment");
  if (maps.Length() != frames.Length()) throw Napi::RangeError::New(env, "maps.length must equal frames.length");

  EncodeSettings s;
  auto num = [&](const char* k, double& dst) {
    if (so.Has(k) && so.Get(k).IsNumber()) dst = so.Get(k).As<Napi::Number>().DoubleValue();
  };
  auto inum = [&](const char* k, int& dst) {
    if (so.Has(k) && so.Get(k).IsNumber()) dst = so.Get(k).As<Napi::Number>().Int32Value();
  };
  auto str = [&](const char* k, std::string& dst) {
    if (so.Has(k) && so.Get(k).IsString()) dst = so.Get(k).As<Napi::String>().Utf8Value();
  };
  str("codec", s.codec);
  num("baseQp", s.baseQp);
  str("preset", s.preset);
  str("tune", s.tune);
  inum("gop", s.gop);
  inum("fps", s.fps);
  inum("bframes", s.bframes);
  inum("threads", s.threads);
  if (s.fps <= 0) throw Napi::RangeError::New(env, "fps must be positive");

  const size_t frameSize = static_cast<size_t>(w) * h + 2 * static_cast<size_t>(w / 2) * (h / 2);
  const size_t mapSize = static_cast<size_t>((h + kMb - 1) / kMb) * ((w + kMb - 1) / kMb);
  auto* worker = new EncodeWorker(env, w, h, s);
  try {
    for (uint32_t i = 0; i < frames.Length(); ++i) {
      Napi::Value f = frames.Get(i);
      Napi::Value m = maps.Get(i);
      if (!f.IsTypedArray() || f.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
        throw Napi::TypeError::New(env, "frame " + std::to_string(i) + " is not a Uint8Array");
      if (f.As<Napi::Uint8Array>().ByteLength() != frameSize)
        throw Napi::RangeError::New(env, "frame " + std::to_string(i) + " has the wrong byte length");
      if (!m.IsNull() && !m.IsUndefined()) {
        if (!m.IsTypedArray() || m.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
          throw Napi::TypeError::New(env, "map " + std::to_string(i) + " is not a Float32Array");
        if (m.As<Napi::Float32Array>().ElementLength() != mapSize)
          throw Napi::RangeError::New(env, "map " + std::to_string(i) + " does not match the macroblock grid");
      }
      worker->AddFrame(f.As<Napi::Uint8Array>(), m);
    }
  } catch (...) {
    delete worker;
    throw;
  }
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

// ---------------------------------------------------------------- decode

class DecodeWorker : public Napi::AsyncWorker {
 public:
  DecodeWorker(Napi::Env env, Napi::Uint8Array data, std::string codec, int threads, int64_t maxFrames, int64_t maxPixels)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        ref_(Napi::Persistent(data.As<Napi::Object>())),
        size_(data.ByteLength()),
        // copied here, on the main thread: the caller's buffer may be transferred or detached while the
        // decode runs on the thread pool. The parser may read up to AV_INPUT_BUFFER_PADDING_SIZE past the end.
        buf_(data.ByteLength() + AV_INPUT_BUFFER_PADDING_SIZE, 0),
        codec_(std::move(codec)),
        threads_(threads),
        maxFrames_(maxFrames),
        maxPixels_(maxPixels) {
    if (size_ > 0) std::memcpy(buf_.data(), data.Data(), size_);
  }

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      Run();
    } catch (const AvFailure& f) {
      // Frames already decoded are still returned; the error only wins if there are none, or if the stream
      // went past the caller's limits (an untrusted stream that is not what its sender declared).
      if (frames_.empty() || f.step == "decode limit") {
        failure_ = f;
        SetError(f.message);
      } else {
        warnings_.push_back(f.message);
      }
    } catch (const std::exception& e) {
      // not the bytestream's doing (allocation failure and the like): a step name the server treats as its own fault
      failure_ = AvFailure{"internal", e.what()};
      SetError(e.what());
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object out = Napi::Object::New(env);
    Napi::Array frames = Napi::Array::New(env, frames_.size());
    Napi::Array qps = Napi::Array::New(env, qps_.size());
    for (size_t i = 0; i < frames_.size(); ++i) {
      frames.Set(static_cast<uint32_t>(i), Napi::Buffer<uint8_t>::Copy(env, frames_[i].data(), frames_[i].size()));
      Napi::Float32Array q = Napi::Float32Array::New(env, qps_[i].size());
      std::copy(qps_[i].begin(), qps_[i].end(), q.Data());
      qps.Set(static_cast<uint32_t>(i), q);
    }
    Napi::Array warnings = Napi::Array::New(env, warnings_.size());
    for (size_t i = 0; i < warnings_.size(); ++i) warnings.Set(static_cast<uint32_t>(i), warnings_[i]);
    out.Set("width", w_);
    out.Set("height", h_);
    out.Set("fps", fps_);
    out.Set("frames", frames);
    out.Set("qps", qps);
    out.Set("warnings", warnings);
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error&) override { deferred_.Reject(MakeJsError(Env(), failure_)); }

 private:
  void Run() {
    const AVCodecID id = codec_ == "h265" ? AV_CODEC_ID_HEVC : AV_CODEC_ID_H264;
    const AVCodec* codec = avcodec_find_decoder(id);
    if (!codec) Fail("find decoder", "no decoder for " + codec_);
    CodecCtxPtr ctx(avcodec_alloc_context3(codec));
    if (!ctx) Fail("alloc decoder context", AVERROR(ENOMEM));
    ctx->export_side_data |= AV_CODEC_EXPORT_DATA_VIDEO_ENC_PARAMS;
    ctx->thread_count = threads_;
    // libavcodec enforces a pixel limit on EVERY frame's buffers (our own check in Store() sees decoded frames):
    // a stream that switches to a huge size mid-way is not decoded at that size. It checks the coded size
    // (aligned up to macroblocks, e.g. 640x360 is 640x368), hence the margin; Store() applies the exact limit.
    if (maxPixels_ > 0) ctx->max_pixels = 2 * maxPixels_ + 65536;
    Check(avcodec_open2(ctx.get(), codec, nullptr), "open decoder");
    ParserPtr parser(av_parser_init(id));
    if (!parser) Fail("init parser", "no parser for " + codec_);

    FramePtr frame(av_frame_alloc());
    PacketPtr pkt(av_packet_alloc());
    if (!frame || !pkt) Fail("alloc frame", AVERROR(ENOMEM));

    const uint8_t* p = buf_.data();
    size_t left = size_;
    bool eof = false;
    while (!eof) {
      uint8_t* out = nullptr;
      int outSize = 0;
      const int inSize = static_cast<int>(std::min<size_t>(left, 1 << 20));
      int used = av_parser_parse2(parser.get(), ctx.get(), &out, &outSize, p, inSize, AV_NOPTS_VALUE, AV_NOPTS_VALUE, 0);
      Check(used, "parse bytestream");
      p += used;
      left -= used;
      if (inSize == 0) eof = true;  // the call with no input flushed the parser
      if (outSize > 0) {
        pkt->data = out;
        pkt->size = outSize;
        Send(ctx.get(), pkt.get(), frame.get());
      }
    }
    int ret = avcodec_send_packet(ctx.get(), nullptr);
    if (ret < 0 && ret != AVERROR_EOF) Check(ret, "flush decoder");
    Receive(ctx.get(), frame.get());
    if (ctx->framerate.num > 0 && ctx->framerate.den > 0) fps_ = av_q2d(ctx->framerate);
    if (frames_.empty()) Fail("decode", "no frame could be decoded from " + std::to_string(size_) + " bytes");
  }

  void Send(AVCodecContext* ctx, AVPacket* pkt, AVFrame* frame) {
    int ret = avcodec_send_packet(ctx, pkt);
    if (ret == AVERROR_INVALIDDATA) {
      // A corrupt packet: keep going, the decoder resynchronises at the next good one.
      warnings_.push_back("send packet to decoder: " + AvErrText(ret));
    } else {
      Check(ret, "send packet to decoder");
    }
    Receive(ctx, frame);
  }

  void Receive(AVCodecContext* ctx, AVFrame* frame) {
    for (;;) {
      int ret = avcodec_receive_frame(ctx, frame);
      if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF) return;
      if (ret == AVERROR_INVALIDDATA) {
        warnings_.push_back("receive frame from decoder: " + AvErrText(ret));
        continue;
      }
      Check(ret, "receive frame from decoder");
      Store(frame);
      av_frame_unref(frame);
    }
  }

  void Store(AVFrame* f) {
    if (w_ == 0) {
      // YUV420p output with (w/2)x(h/2) chroma: an odd size would make the conversion below write past the
      // buffer (it writes ceil(w/2) x ceil(h/2)); such a stream is the segment's fault
      if (f->width <= 0 || f->height <= 0 || ((f->width | f->height) & 1))
        Fail("decode", "frame size " + std::to_string(f->width) + "x" + std::to_string(f->height) + " is not positive and even");
      w_ = f->width;
      h_ = f->height;
      // limits before any frame is kept: a small stream of skip frames must not expand without bound
      if (maxPixels_ > 0 && static_cast<int64_t>(w_) * h_ > maxPixels_)
        Fail("decode limit", "frame size " + std::to_string(w_) + "x" + std::to_string(h_) + " exceeds the limit of " + std::to_string(maxPixels_) + " pixels");
    }
    if (f->width != w_ || f->height != h_)
      Fail("decode limit", "frame size changed mid-stream from " + std::to_string(w_) + "x" + std::to_string(h_) + " to " + std::to_string(f->width) + "x" + std::to_string(f->height));
    if (maxFrames_ > 0 && static_cast<int64_t>(frames_.size()) >= maxFrames_)
      Fail("decode limit", "the stream holds more than " + std::to_string(maxFrames_) + " frames");
    const int w = w_, h = h_;
    std::vector<uint8_t> out(static_cast<size_t>(w) * h + 2 * static_cast<size_t>(w / 2) * (h / 2));
    const bool plain = (f->format == AV_PIX_FMT_YUV420P || f->format == AV_PIX_FMT_YUVJ420P) && f->width == w && f->height == h;
    if (plain) {
      ReadFrame(f, out.data());
    } else {
      // Other chroma formats / bit depths: convert to yuv420p (same size: a size change was refused above).
      SwsPtr sws(sws_getContext(f->width, f->height, static_cast<AVPixelFormat>(f->format), w, h, AV_PIX_FMT_YUV420P,
                                SWS_BILINEAR, nullptr, nullptr, nullptr));
      if (!sws) Fail("convert decoded frame", "unsupported pixel format");
      uint8_t* dst[4] = {out.data(), out.data() + w * h, out.data() + w * h + (w / 2) * (h / 2), nullptr};
      int dstStride[4] = {w, w / 2, w / 2, 0};
      sws_scale(sws.get(), f->data, f->linesize, 0, f->height, dst, dstStride);
    }
    frames_.push_back(std::move(out));

    const int rows = (h + kMb - 1) / kMb, cols = (w + kMb - 1) / kMb;
    std::vector<float> qp(static_cast<size_t>(rows) * cols, NAN);
    AVFrameSideData* sd = av_frame_get_side_data(f, AV_FRAME_DATA_VIDEO_ENC_PARAMS);
    if (sd) {
      auto* par = reinterpret_cast<AVVideoEncParams*>(sd->data);
      if (par->nb_blocks == 0) {
        std::fill(qp.begin(), qp.end(), static_cast<float>(par->qp));
      }
      for (unsigned b = 0; b < par->nb_blocks; ++b) {
        const AVVideoBlockParams* blk = av_video_enc_params_block(par, b);
        const float v = static_cast<float>(par->qp + blk->delta_qp);
        // A block may cover several macroblocks (HEVC CUs) or be smaller than one (last one written wins).
        const int r0 = blk->src_y / kMb, c0 = blk->src_x / kMb;
        const int r1 = std::min(rows, (blk->src_y + std::max(blk->h, 1) + kMb - 1) / kMb);
        const int c1 = std::min(cols, (blk->src_x + std::max(blk->w, 1) + kMb - 1) / kMb);
        for (int r = std::max(0, r0); r < r1; ++r)
          for (int c = std::max(0, c0); c < c1; ++c) qp[static_cast<size_t>(r) * cols + c] = v;
      }
    }
    qps_.push_back(std::move(qp));
  }

  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference ref_;
  size_t size_;
  std::vector<uint8_t> buf_;
  std::string codec_;
  int threads_;
  int64_t maxFrames_;  // 0 = no limit
  int64_t maxPixels_;  // 0 = no limit
  int w_ = 0, h_ = 0;
  double fps_ = 0;
  std::vector<std::vector<uint8_t>> frames_;
  std::vector<std::vector<float>> qps_;
  std::vector<std::string> warnings_;
  AvFailure failure_;
};

// decode(data: Uint8Array, codec: 'h264'|'h265', threads: number, maxFrames?: number, maxPixels?: number) -> Promise
// (maxFrames / maxPixels: fail once the stream holds more frames, or a larger first frame; 0 or absent = no limit)
Napi::Value Decode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw Napi::TypeError::New(env, "decode(data: Uint8Array, codec?, threads?, maxFrames?, maxPixels?)");
  std::string codec = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "h264";
  int threads = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : 1;
  const int64_t maxFrames = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Int64Value() : 0;
  const int64_t maxPixels = info.Length() > 4 && info[4].IsNumber() ? info[4].As<Napi::Number>().Int64Value() : 0;
  auto* worker = new DecodeWorker(env, info[0].As<Napi::Uint8Array>(), codec, threads, maxFrames, maxPixels);
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

// ---------------------------------------------------------------- scale

// scale(src: Uint8Array, w, h, dstW, dstH, algo: 'bilinear'|'area'|'bicubic') -> Buffer (sync)
// One YUV420p resize with libswscale; throws AvFailure. Shared by scale() and scaleAsync().
void ScaleInto(const uint8_t* s, int w, int h, uint8_t* d, int dw, int dh, int flags) {
  SwsPtr sws(sws_getContext(w, h, AV_PIX_FMT_YUV420P, dw, dh, AV_PIX_FMT_YUV420P, flags, nullptr, nullptr, nullptr));
  if (!sws) Fail("create scaler", "sws_getContext failed");
  const size_t sy = static_cast<size_t>(w) * h, sc = static_cast<size_t>(w / 2) * (h / 2);
  const size_t dy = static_cast<size_t>(dw) * dh, dc = static_cast<size_t>(dw / 2) * (dh / 2);
  const uint8_t* srcPlanes[4] = {s, s + sy, s + sy + sc, nullptr};
  const int srcStride[4] = {w, w / 2, w / 2, 0};
  uint8_t* dstPlanes[4] = {d, d + dy, d + dy + dc, nullptr};
  const int dstStride[4] = {dw, dw / 2, dw / 2, 0};
  const int rows = sws_scale(sws.get(), srcPlanes, srcStride, 0, h, dstPlanes, dstStride);
  if (rows < 0) Fail("scale frame", rows);
}

// scale(src, width, height, dstWidth, dstHeight, algo?) sizes and filter, validated (throws a JS error).
struct ScaleDims {
  int w, h, dw, dh, flags;
  size_t dstSize;
};

ScaleDims ParseScaleArgs(const Napi::CallbackInfo& info, const char* name) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw Napi::TypeError::New(env, std::string(name) + "(src, width, height, dstWidth, dstHeight, algo?)");
  ScaleDims a{info[1].As<Napi::Number>().Int32Value(), info[2].As<Napi::Number>().Int32Value(),
              info[3].As<Napi::Number>().Int32Value(), info[4].As<Napi::Number>().Int32Value(), SWS_BILINEAR, 0};
  const std::string algo = info.Length() > 5 && info[5].IsString() ? info[5].As<Napi::String>().Utf8Value() : "bilinear";
  if (a.w <= 0 || a.h <= 0 || a.dw <= 0 || a.dh <= 0 || ((a.w | a.h | a.dw | a.dh) & 1))
    throw Napi::RangeError::New(env, "dimensions must be positive and even");
  if (a.w > kMaxScaleDim || a.h > kMaxScaleDim || a.dw > kMaxScaleDim || a.dh > kMaxScaleDim)
    throw Napi::RangeError::New(env, "dimensions must be at most " + std::to_string(kMaxScaleDim));
  const size_t srcSize = static_cast<size_t>(a.w) * a.h + 2 * static_cast<size_t>(a.w / 2) * (a.h / 2);
  if (info[0].As<Napi::Uint8Array>().ByteLength() != srcSize) throw Napi::RangeError::New(env, "source buffer has the wrong byte length");
  a.flags = algo == "area" ? SWS_AREA : algo == "bicubic" ? SWS_BICUBIC : SWS_BILINEAR;
  a.dstSize = static_cast<size_t>(a.dw) * a.dh + 2 * static_cast<size_t>(a.dw / 2) * (a.dh / 2);
  return a;
}

Napi::Value Scale(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ScaleDims a = ParseScaleArgs(info, "scale");
  Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::New(env, a.dstSize);
  try {
    ScaleInto(info[0].As<Napi::Uint8Array>().Data(), a.w, a.h, out.Data(), a.dw, a.dh, a.flags);
  } catch (const AvFailure& f) {
    throw Napi::Error(env, MakeJsError(env, f));
  }
  return out;
}

// The same resize on the libuv thread pool. Source and result are JS buffers pinned by references until the
// promise settles; the pool thread writes straight into the result (no copy back).
class ScaleWorker : public Napi::AsyncWorker {
 public:
  ScaleWorker(Napi::Env env, Napi::Uint8Array src, const ScaleDims& a)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        src_(src.Data(), src.Data() + src.ByteLength()),  // copied on the main thread (see EncodeWorker::AddFrame)
        a_(a) {
    Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::New(env, a.dstSize);
    out_ = out.Data();
    outRef_ = Napi::Persistent(out.As<Napi::Object>());
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      ScaleInto(src_.data(), a_.w, a_.h, out_, a_.dw, a_.dh, a_.flags);
    } catch (const AvFailure& f) {
      failure_ = f;
      SetError(f.message);
    }
  }
  void OnOK() override { deferred_.Resolve(outRef_.Value()); }
  void OnError(const Napi::Error&) override { deferred_.Reject(MakeJsError(Env(), failure_)); }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference outRef_;
  std::vector<uint8_t> src_;
  uint8_t* out_ = nullptr;
  ScaleDims a_;
  AvFailure failure_;
};

Napi::Value ScaleAsync(const Napi::CallbackInfo& info) {
  const ScaleDims a = ParseScaleArgs(info, "scaleAsync");
  auto* worker = new ScaleWorker(info.Env(), info[0].As<Napi::Uint8Array>(), a);
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

Napi::Value Versions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  auto v = [](unsigned x) { return std::to_string(x >> 16) + "." + std::to_string((x >> 8) & 0xff) + "." + std::to_string(x & 0xff); };
  o.Set("avcodec", v(avcodec_version()));
  o.Set("avutil", v(avutil_version()));
  o.Set("swscale", v(swscale_version()));
  o.Set("h264", avcodec_find_encoder_by_name("libx264") != nullptr);
  o.Set("h265", avcodec_find_encoder_by_name("libx265") != nullptr);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // libav logs to stderr; quiet by default (failures come back as JS errors). CAMSTREAM_AV_LOG=<level>
  // (e.g. 16 = error, 24 = warning, 32 = info) shows libav's own messages for debugging.
  const char* lvl = std::getenv("CAMSTREAM_AV_LOG");
  av_log_set_level(lvl ? std::atoi(lvl) : AV_LOG_FATAL);
  exports.Set("encode", Napi::Function::New(env, Encode, "encode"));
  exports.Set("decode", Napi::Function::New(env, Decode, "decode"));
  exports.Set("scale", Napi::Function::New(env, Scale, "scale"));
  exports.Set("scaleAsync", Napi::Function::New(env, ScaleAsync, "scaleAsync"));
  exports.Set("versions", Napi::Function::New(env, Versions, "versions"));
  RegisterKernels(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(camstream_encoder, Init)
