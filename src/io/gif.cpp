#include "sbgm/io/gif.h"

#include <c10/util/Exception.h>
#include <gif_lib.h>
#include <torch/torch.h>

#include <cmath>
#include <memory>

namespace sbgm::io {
namespace {

constexpr int kGreys = 40;

// Palette: 216 colours of the 6x6x6 cube (index 36 r + 6 g + b), then 40
// greys k * 255 / 39.
std::vector<GifColorType> palette() {
  std::vector<GifColorType> p(256);
  for (int i = 0; i < 216; ++i) {
    p[i].Red = static_cast<GifByteType>(51 * (i / 36));
    p[i].Green = static_cast<GifByteType>(51 * ((i / 6) % 6));
    p[i].Blue = static_cast<GifByteType>(51 * (i % 6));
  }
  for (int k = 0; k < kGreys; ++k) {
    auto g = static_cast<GifByteType>(std::lround(k * 255.0 / (kGreys - 1)));
    p[216 + k].Red = p[216 + k].Green = p[216 + k].Blue = g;
  }
  return p;
}

GifByteType index_of(uint8_t r, uint8_t g, uint8_t b) {
  if (r == g && g == b) {
    return static_cast<GifByteType>(
        216 + std::lround(r * (kGreys - 1) / 255.0));
  }
  auto q = [](uint8_t v) { return static_cast<int>(std::lround(v / 51.0)); };
  return static_cast<GifByteType>(36 * q(r) + 6 * q(g) + q(b));
}

struct GifCloser {
  void operator()(GifFileType* f) const {
    int err = 0;
    EGifCloseFile(f, &err);
  }
};

[[noreturn]] void gif_fail(const std::string& path, const char* step, int err) {
  const char* msg = GifErrorString(err);
  TORCH_CHECK(
      false, "save_gif: ", path, ": ", step, " failed (", msg ? msg : "?", ")");
}

}  // namespace

void save_gif(
    const std::string& path,
    const std::vector<torch::Tensor>& frames,
    const GifOptions& o) {
  TORCH_CHECK(!frames.empty(), "save_gif: no frames");
  TORCH_CHECK(
      o.delay_cs() >= 1 && o.delay_cs() <= 65535,
      "save_gif: delay_cs must be in [1, 65535], got ",
      o.delay_cs());
  TORCH_CHECK(
      o.loop_count() >= 0 && o.loop_count() <= 65535,
      "save_gif: loop_count must be in [0, 65535], got ",
      o.loop_count());
  TORCH_CHECK(
      o.last_frame_extra_cs() >= 0 &&
          o.delay_cs() + o.last_frame_extra_cs() <= 65535,
      "save_gif: last_frame_extra_cs must be >= 0 with delay_cs + "
      "last_frame_extra_cs <= 65535, got ",
      o.last_frame_extra_cs());
  std::vector<torch::Tensor> rgb;
  for (size_t i = 0; i < frames.size(); ++i) {
    const auto& f = frames[i];
    TORCH_CHECK(
        f.defined() && f.scalar_type() == torch::kByte &&
            (f.dim() == 2 || (f.dim() == 3 && f.size(2) == 3)),
        "save_gif: frame ",
        i,
        " must be uint8 [H, W, 3] or [H, W], got ",
        f.defined() ? c10::str(f.scalar_type(), " ", f.sizes())
                    : std::string("undefined"));
    auto c =
        f.dim() == 2 ? f.unsqueeze(2).expand({f.size(0), f.size(1), 3}) : f;
    c = c.to(torch::kCPU).contiguous();
    if (i > 0) {
      TORCH_CHECK(
          c.size(0) == rgb[0].size(0) && c.size(1) == rgb[0].size(1),
          "save_gif: frame ",
          i,
          " is ",
          c.size(0),
          "x",
          c.size(1),
          " but frame 0 is ",
          rgb[0].size(0),
          "x",
          rgb[0].size(1));
    }
    TORCH_CHECK(
        c.size(0) > 0 && c.size(1) > 0 && c.size(0) <= 65535 &&
            c.size(1) <= 65535,
        "save_gif: frame ",
        i,
        " size must be in [1, 65535], got ",
        c.sizes());
    rgb.push_back(c);
  }
  const int h = static_cast<int>(rgb[0].size(0));
  const int w = static_cast<int>(rgb[0].size(1));

  int err = 0;
  std::unique_ptr<GifFileType, GifCloser> gif(
      EGifOpenFileName(path.c_str(), false, &err));
  if (!gif) {
    gif_fail(path, "opening", err);
  }
  EGifSetGifVersion(gif.get(), true);
  auto pal = palette();
  ColorMapObject* cmap = GifMakeMapObject(256, pal.data());
  TORCH_CHECK(cmap != nullptr, "save_gif: out of memory");
  int rc = EGifPutScreenDesc(gif.get(), w, h, 8, 0, cmap);
  GifFreeMapObject(cmap);
  if (rc == GIF_ERROR) {
    gif_fail(path, "writing the screen descriptor", gif->Error);
  }
  // NETSCAPE2.0 application extension: sub-block {1, loop lo, loop hi}.
  unsigned char loop[3] = {
      1,
      static_cast<unsigned char>(o.loop_count() & 0xff),
      static_cast<unsigned char>(o.loop_count() >> 8)};
  if (EGifPutExtensionLeader(gif.get(), APPLICATION_EXT_FUNC_CODE) ==
          GIF_ERROR ||
      EGifPutExtensionBlock(gif.get(), 11, "NETSCAPE2.0") == GIF_ERROR ||
      EGifPutExtensionBlock(gif.get(), 3, loop) == GIF_ERROR ||
      EGifPutExtensionTrailer(gif.get()) == GIF_ERROR) {
    gif_fail(path, "writing the loop extension", gif->Error);
  }
  std::vector<GifByteType> row(static_cast<size_t>(w));
  for (size_t i = 0; i < rgb.size(); ++i) {
    GraphicsControlBlock gcb;
    gcb.DisposalMode = DISPOSE_DO_NOT;
    gcb.UserInputFlag = false;
    gcb.DelayTime = static_cast<int>(
        o.delay_cs() + (i + 1 == rgb.size() ? o.last_frame_extra_cs() : 0));
    gcb.TransparentColor = NO_TRANSPARENT_COLOR;
    GifByteType ext[4];
    size_t len = EGifGCBToExtension(&gcb, ext);
    if (EGifPutExtension(
            gif.get(), GRAPHICS_EXT_FUNC_CODE, static_cast<int>(len), ext) ==
        GIF_ERROR) {
      gif_fail(path, "writing a frame delay", gif->Error);
    }
    if (EGifPutImageDesc(gif.get(), 0, 0, w, h, false, nullptr) == GIF_ERROR) {
      gif_fail(path, "writing an image descriptor", gif->Error);
    }
    const uint8_t* p = rgb[i].data_ptr<uint8_t>();
    for (int r = 0; r < h; ++r) {
      for (int c = 0; c < w; ++c) {
        const uint8_t* q = p + (static_cast<size_t>(r) * w + c) * 3;
        row[c] = index_of(q[0], q[1], q[2]);
      }
      if (EGifPutLine(gif.get(), row.data(), w) == GIF_ERROR) {
        gif_fail(path, "writing pixels", gif->Error);
      }
    }
  }
  GifFileType* raw = gif.release();
  if (EGifCloseFile(raw, &err) == GIF_ERROR) {
    gif_fail(path, "closing", err);
  }
}

}  // namespace sbgm::io
