// Animated GIF: giflib reads back the frame count, size, delays, loop
// extension and palette colours.

#include <gif_lib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "sbgm/io/gif.h"
#include "support.h"

using namespace sbgm::io;

namespace {

std::string tmp(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("sbgm_gif_" + std::to_string(getpid()) + "_" + name))
      .string();
}

TEST(GifTest, FramesDelaysAndLoopReadBack) {
  std::vector<torch::Tensor> frames;
  for (int i = 0; i < 5; ++i) {
    auto f = torch::full({30, 40, 3}, 255, torch::kByte);
    f.slice(0, 0, 10).select(2, 1).fill_(0);  // magenta band (255, 0, 255)
    f.slice(0, 10, 20).fill_(static_cast<uint8_t>(i * 51));  // grey band
    frames.push_back(f);
  }
  auto path = tmp("a.gif");
  save_gif(path, frames, GifOptions().delay_cs(7).last_frame_extra_cs(50));
  int err = 0;
  GifFileType* g = DGifOpenFileName(path.c_str(), &err);
  ASSERT_NE(g, nullptr) << GifErrorString(err);
  ASSERT_EQ(DGifSlurp(g), GIF_OK);
  EXPECT_EQ(g->ImageCount, 5);
  EXPECT_EQ(g->SWidth, 40);
  EXPECT_EQ(g->SHeight, 30);
  for (int i = 0; i < g->ImageCount; ++i) {
    GraphicsControlBlock gcb;
    ASSERT_EQ(DGifSavedExtensionToGCB(g, i, &gcb), GIF_OK);
    EXPECT_EQ(gcb.DelayTime, i == 4 ? 57 : 7);
    const SavedImage& im = g->SavedImages[i];
    EXPECT_EQ(im.ImageDesc.Width, 40);
    ColorMapObject* cm =
        im.ImageDesc.ColorMap ? im.ImageDesc.ColorMap : g->SColorMap;
    auto color = [&](int r, int c) {
      return cm->Colors[im.RasterBits[r * 40 + c]];
    };
    EXPECT_EQ(color(5, 5).Red, 255);
    EXPECT_EQ(color(5, 5).Green, 0);
    EXPECT_EQ(color(5, 5).Blue, 255);
    // Greys k * 51 are within the 40-level ramp's step (255 / 39 / 2 < 4).
    EXPECT_NEAR(color(15, 3).Red, i * 51, 4);
    EXPECT_EQ(color(15, 3).Red, color(15, 3).Blue);
    EXPECT_EQ(color(25, 39).Green, 255);
  }
  // The NETSCAPE2.0 loop extension comes before the first frame: loop 0.
  bool found = false;
  const SavedImage& first = g->SavedImages[0];
  for (int k = 0; k + 1 < first.ExtensionBlockCount; ++k) {
    const ExtensionBlock& e = first.ExtensionBlocks[k];
    if (e.Function == APPLICATION_EXT_FUNC_CODE && e.ByteCount == 11 &&
        std::string(reinterpret_cast<char*>(e.Bytes), 11) == "NETSCAPE2.0") {
      const ExtensionBlock& sub = first.ExtensionBlocks[k + 1];
      ASSERT_EQ(sub.ByteCount, 3);
      EXPECT_EQ(sub.Bytes[0], 1);
      EXPECT_EQ(sub.Bytes[1], 0);
      EXPECT_EQ(sub.Bytes[2], 0);
      found = true;
    }
  }
  EXPECT_TRUE(found);
  DGifCloseFile(g, &err);
  std::remove(path.c_str());
}

TEST(GifTest, GreyFramesAndErrors) {
  auto path = tmp("b.gif");
  save_gif(path, {torch::zeros({8, 9}, torch::kByte)});
  int err = 0;
  GifFileType* g = DGifOpenFileName(path.c_str(), &err);
  ASSERT_NE(g, nullptr);
  ASSERT_EQ(DGifSlurp(g), GIF_OK);
  EXPECT_EQ(g->ImageCount, 1);
  EXPECT_EQ(g->SWidth, 9);
  DGifCloseFile(g, &err);
  std::remove(path.c_str());

  auto f = torch::zeros({8, 9, 3}, torch::kByte);
  EXPECT_THROW_MSG(save_gif(path, {}), "no frames");
  EXPECT_THROW_MSG(
      save_gif(path, {f, torch::zeros({8, 8, 3}, torch::kByte)}),
      "frame 1 is 8x8 but frame 0 is 8x9");
  EXPECT_THROW_MSG(
      save_gif(path, {torch::zeros({8, 9, 3})}), "frame 0 must be uint8");
  EXPECT_THROW_MSG(
      save_gif(path, {f}, GifOptions().delay_cs(0)), "delay_cs must be");
  EXPECT_THROW_MSG(
      save_gif(path, {f}, GifOptions().loop_count(-1)), "loop_count must be");
  EXPECT_THROW_MSG(save_gif("/nonexistent-dir/x.gif", {f}), "opening failed");
}

}  // namespace
