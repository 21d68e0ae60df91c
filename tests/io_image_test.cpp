// PNG output and the figure canvas: files decode (stb_image) to the pixels
// written; geometry of grids and plots.

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "sbgm/io/gif.h"
#include "sbgm/io/image.h"
#include "support.h"

#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb_image.h>
#pragma GCC diagnostic pop

using namespace sbgm::io;

namespace {

std::string tmp(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("sbgm_img_" + std::to_string(getpid()) + "_" + name))
      .string();
}

// Decodes a PNG into uint8 [H, W, C] (C as stored).
torch::Tensor load_png(const std::string& path) {
  int w = 0, h = 0, c = 0;
  unsigned char* p = stbi_load(path.c_str(), &w, &h, &c, 0);
  if (p == nullptr) {
    ADD_FAILURE() << "stb_image cannot decode " << path;
    return {};
  }
  auto t = torch::from_blob(p, {h, w, c}, torch::kByte).clone();
  stbi_image_free(p);
  return t;
}

std::vector<uint8_t> px(const torch::Tensor& img, int64_t r, int64_t c) {
  auto p = img[r][c];
  return {p[0].item<uint8_t>(), p[1].item<uint8_t>(), p[2].item<uint8_t>()};
}

TEST(ImageTest, SavePngRoundTrips) {
  auto rgb = torch::randint(0, 256, {17, 23, 3}, torch::kByte);
  save_png(tmp("rgb.png"), rgb);
  auto back = load_png(tmp("rgb.png"));
  EXPECT_TRUE(torch::equal(back, rgb));
  auto grey = torch::randint(0, 256, {9, 5}, torch::kByte);
  save_png(tmp("grey.png"), grey.t());  // non-contiguous is fine
  back = load_png(tmp("grey.png"));
  EXPECT_TRUE(torch::equal(back.squeeze(2), grey.t()));
  std::remove(tmp("rgb.png").c_str());
  std::remove(tmp("grey.png").c_str());
}

TEST(ImageTest, SavePngErrors) {
  EXPECT_THROW_MSG(
      save_png(tmp("x.png"), torch::zeros({4, 4, 3})),
      "expected a uint8 image");
  EXPECT_THROW_MSG(
      save_png(tmp("x.png"), torch::zeros({4, 4, 2}, torch::kByte)),
      "[4, 4, 2]");
  EXPECT_THROW_MSG(
      save_png(tmp("x.png"), torch::zeros({0, 4}, torch::kByte)),
      "image is empty");
  EXPECT_THROW_MSG(
      save_png("/nonexistent-dir/x.png", torch::zeros({4, 4}, torch::kByte)),
      "could not write");
}

TEST(ImageTest, ImageGridLayout) {
  // 5 grey images of 3x4, 2 per row, pad 1: 3 rows -> 3*(3+1)+1 = 13 high,
  // 2*(4+1)+1 = 11 wide; image i filled with value i / 4.
  auto imgs = torch::arange(5, torch::kFloat)
                  .div(4)
                  .view({5, 1, 1, 1})
                  .expand({5, 1, 3, 4});
  auto g = image_grid(imgs, 2, 1);
  ASSERT_EQ(g.sizes(), (std::vector<int64_t>{13, 11, 3}));
  EXPECT_EQ(px(g, 0, 0), (std::vector<uint8_t>{255, 255, 255}));  // padding
  EXPECT_EQ(px(g, 1, 1), (std::vector<uint8_t>{0, 0, 0}));        // image 0
  EXPECT_EQ(
      px(g, 1, 6),
      (std::vector<uint8_t>{64, 64, 64}));  // image 1: round(63.75)
  EXPECT_EQ(
      px(g, 9 + 2, 1 + 3),
      (std::vector<uint8_t>{255, 255, 255}));  // image 4 = 1.0
  EXPECT_EQ(px(g, 9, 6), (std::vector<uint8_t>{255, 255, 255}));  // empty slot
  // Colour images keep their channels; values are clamped.
  auto c = torch::tensor({2.0f, 0.5f, -1.0f})
               .view({1, 3, 1, 1})
               .expand({1, 3, 2, 2});
  auto gc = image_grid(c, 8, 0);
  ASSERT_EQ(gc.sizes(), (std::vector<int64_t>{2, 2, 3}));
  EXPECT_EQ(px(gc, 1, 1), (std::vector<uint8_t>{255, 128, 0}));
  EXPECT_THROW_MSG(image_grid(torch::zeros({2, 2, 4, 4})), "C = 1 or 3");
  EXPECT_THROW_MSG(
      image_grid(torch::zeros({2, 1, 4, 4}), 0), "nrow must be positive");
  EXPECT_THROW_MSG(
      image_grid(torch::zeros({2, 1, 4, 4}, torch::kByte)),
      "expected floating images");
}

TEST(ImageTest, DenoiseStripRowsAreSamples) {
  // 2 samples of 1x2x2 at 3 steps; sample i at step j has value (3 i + j) / 8.
  std::vector<torch::Tensor> steps;
  for (int j = 0; j < 3; ++j) {
    steps.push_back((torch::tensor({0.0f, 3.0f}) + j)
                        .div(8)
                        .view({2, 1, 1, 1})
                        .expand({2, 1, 2, 2}));
  }
  auto g = denoise_strip(steps, 1);
  ASSERT_EQ(g.sizes(), (std::vector<int64_t>{2 * 3 + 1, 3 * 3 + 1, 3}));
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 3; ++j) {
      auto v = static_cast<uint8_t>(std::lround(255.0 * (3 * i + j) / 8));
      EXPECT_EQ(px(g, 1 + 3 * i, 1 + 3 * j), (std::vector<uint8_t>{v, v, v}))
          << i << " " << j;
    }
  }
  EXPECT_THROW_MSG(denoise_strip({}), "no steps");
  EXPECT_THROW_MSG(
      denoise_strip({steps[0], torch::zeros({2, 1, 2, 3})}),
      "step 1 must be [N, C, H, W] of the same shape as step 0 [2, 1, 2, 2], "
      "got [2, 1, 2, 3]");
}

TEST(ImageTest, ScatterPlacesPointsWhereExpected) {
  auto o = ScatterOptions().size(101).range(-1, 1).radius(0).alpha(1.0);
  // x = 0.5 -> column 75; y = -0.5 -> row 100 - 25 = 75.
  auto pts = torch::tensor({{0.5, -0.5}, {5.0, 0.0}});  // second is outside
  auto img = scatter_plot({{pts, Rgb{255, 0, 0}}}, o);
  ASSERT_EQ(img.sizes(), (std::vector<int64_t>{101, 101, 3}));
  EXPECT_EQ(px(img, 75, 75), (std::vector<uint8_t>{255, 0, 0}));
  EXPECT_EQ(px(img, 75, 74), (std::vector<uint8_t>{255, 255, 255}));
  // Exactly one red pixel.
  auto red = (img.select(2, 0) == 255) & (img.select(2, 1) == 0);
  EXPECT_EQ(red.sum().item<int64_t>(), 1);
  // Later sets are drawn over earlier ones; alpha blends.
  auto img2 = scatter_plot({{pts, Rgb{255, 0, 0}}, {pts, Rgb{0, 0, 255}}}, o);
  EXPECT_EQ(px(img2, 75, 75), (std::vector<uint8_t>{0, 0, 255}));
  auto img3 = scatter_plot({{pts, Rgb{0, 0, 0}}}, ScatterOptions(o).alpha(0.5));
  EXPECT_EQ(px(img3, 75, 75), (std::vector<uint8_t>{128, 128, 128}));
  // Titles put dark pixels in the top left corner only.
  auto t = scatter_plot({}, ScatterOptions().size(128).title("t=0.5"));
  auto dark = (t.slice(0, 1, 127).slice(1, 1, 127).select(2, 0) < 50);
  EXPECT_GT(dark.sum().item<int64_t>(), 10);
  EXPECT_EQ(dark.slice(0, 30).sum().item<int64_t>(), 0);
}

TEST(ImageTest, ScatterErrors) {
  EXPECT_THROW_MSG(
      scatter_plot({{torch::zeros({3, 3}), {}}}), "point set 0 must be [N, 2]");
  EXPECT_THROW_MSG(
      scatter_plot({{torch::zeros({3, 2}, torch::kLong), {}}}),
      "must be floating");
  EXPECT_THROW_MSG(
      scatter_plot({}, ScatterOptions().range(1, 1)), "finite lo < hi");
  EXPECT_THROW_MSG(
      scatter_plot({}, ScatterOptions().alpha(0)), "alpha must be");
  EXPECT_THROW_MSG(scatter_plot({}, ScatterOptions().size(2)), "size must be");
}

TEST(ImageTest, PanelGrid) {
  std::vector<torch::Tensor> panels;
  for (int i = 0; i < 20; ++i) {
    panels.push_back(torch::full({10, 12, 3}, i * 10, torch::kByte));
  }
  auto g = panel_grid(panels, 5, 2);
  ASSERT_EQ(g.sizes(), (std::vector<int64_t>{4 * 12 + 2, 5 * 14 + 2, 3}));
  // Panel 7 (row 1, column 2) has its top left at (2 + 12, 2 + 2 * 14).
  EXPECT_EQ(px(g, 14, 30), (std::vector<uint8_t>{70, 70, 70}));
  EXPECT_EQ(px(g, 13, 30), (std::vector<uint8_t>{255, 255, 255}));
  panels.push_back(torch::zeros({10, 11, 3}, torch::kByte));
  EXPECT_THROW_MSG(panel_grid(panels, 5), "panel 20 is [10, 11, 3]");
  EXPECT_THROW_MSG(panel_grid({}, 5), "no panels");
  EXPECT_THROW_MSG(panel_grid({panels[0]}, 0), "ncol must be positive");
}

TEST(ImageTest, LinePlot) {
  // A straight line from the bottom left to the top right of the frame.
  std::vector<double> ys = {0, 1, 2, 3, 4};
  auto o = LinePlotOptions().color(Rgb{255, 0, 0});
  auto img = line_plot(ys, o);
  ASSERT_EQ(img.sizes(), (std::vector<int64_t>{320, 480, 3}));
  auto red = (img.select(2, 0) == 255) & (img.select(2, 1) == 0);
  auto idx = red.nonzero();
  ASSERT_GT(idx.size(0), 300);
  // Leftmost red pixel is at the bottom, rightmost at the top.
  auto lo_col = idx.select(1, 1).argmin().item<int64_t>();
  auto hi_col = idx.select(1, 1).argmax().item<int64_t>();
  EXPECT_GT(idx[lo_col][0].item<int64_t>(), idx[hi_col][0].item<int64_t>());
  // log_y: 1, 10, 100 are evenly spaced, so the middle point lies halfway.
  auto lg = line_plot({1, 10, 100}, LinePlotOptions(o).log_y(true));
  auto lidx = ((lg.select(2, 0) == 255) & (lg.select(2, 1) == 0)).nonzero();
  auto rows = lidx.select(1, 0).to(torch::kDouble);
  double mid_row = (rows.max().item<double>() + rows.min().item<double>()) / 2;
  auto cols = lidx.select(1, 1);
  int64_t mid_col =
      (cols.max().item<int64_t>() + cols.min().item<int64_t>()) / 2;
  auto at_mid = rows.index({cols == mid_col});
  ASSERT_GT(at_mid.numel(), 0);
  EXPECT_NEAR(at_mid.mean().item<double>(), mid_row, 2.0);
  EXPECT_THROW_MSG(line_plot({}), "no values");
  EXPECT_THROW_MSG(line_plot({1, NAN}), "value 1 is not finite");
  EXPECT_THROW_MSG(
      line_plot({1, 0}, LinePlotOptions().log_y(true)),
      "log_y needs positive values");
  EXPECT_THROW_MSG(line_plot({1}, LinePlotOptions().width(3)), "size must be");
  // A single value and a flat line still draw.
  EXPECT_EQ(line_plot({2.0}).size(0), 320);
  EXPECT_EQ(line_plot({2.0, 2.0, 2.0}).size(0), 320);
}

TEST(ImageTest, DrawTextErrors) {
  auto img = torch::zeros({4, 4}, torch::kByte);
  EXPECT_THROW_MSG(draw_text(img, "a", 0, 0), "contiguous CPU image [H, W, 3]");
  auto rgb = torch::full({20, 40, 3}, 255, torch::kByte);
  EXPECT_THROW_MSG(
      draw_text(rgb, "a", 0, 0, {}, 0), "scale must be in [1, 16]");
  draw_text(rgb, "Hi", -3, 2);  // clipped, no crash
  EXPECT_LT(rgb.min().item<uint8_t>(), 255);
}

// stb_image, a decoder independent of giflib, reads our GIF: frame count,
// size, delays (ms) and colours.
TEST(ImageTest, GifDecodesWithStbImage) {
  std::vector<torch::Tensor> frames;
  for (int i = 0; i < 3; ++i) {
    auto f = torch::zeros({6, 7, 3}, torch::kByte);
    f.select(2, i).fill_(255);  // red, green, blue frames
    frames.push_back(f);
  }
  auto path = tmp("c.gif");
  sbgm::io::save_gif(path, frames, sbgm::io::GifOptions().delay_cs(12));
  std::ifstream in(path, std::ios::binary);
  std::string bytes{
      std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  int* delays = nullptr;
  int w = 0, h = 0, n = 0, comp = 0;
  unsigned char* p = stbi_load_gif_from_memory(
      reinterpret_cast<const stbi_uc*>(bytes.data()),
      static_cast<int>(bytes.size()),
      &delays,
      &w,
      &h,
      &n,
      &comp,
      3);
  ASSERT_NE(p, nullptr) << stbi_failure_reason();
  EXPECT_EQ(w, 7);
  EXPECT_EQ(h, 6);
  ASSERT_EQ(n, 3);
  auto all = torch::from_blob(p, {n, h, w, 3}, torch::kByte).clone();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(delays[i], 120);
    EXPECT_TRUE(torch::equal(all[i], frames[i])) << "frame " << i;
  }
  stbi_image_free(p);
  stbi_image_free(delays);
  std::remove(path.c_str());
}

}  // namespace
