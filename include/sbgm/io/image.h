#pragma once

/// \file
/// PNG output (stb_image_write) and a small RGB canvas for figures: image
/// grids, scatter plots of 2-D samples, panel grids and loss curves. Every
/// image is a CPU uint8 tensor [H, W, 3] (RGB, row-major, top row first).

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace sbgm::io {

/// An RGB colour.
struct Rgb {
  uint8_t r = 0;
  uint8_t g = 0;
  uint8_t b = 0;
};

/// Writes a uint8 image [H, W, 3] (RGB) or [H, W] / [H, W, 1] (gray) as PNG.
void save_png(const std::string& path, const torch::Tensor& image);

/// Tiles images [N, C, H, W] (C = 1 or 3, floating, clamped to [0, 1]) into
/// one uint8 [H', W', 3] image with `nrow` images per row and `pad` pixels of
/// white between and around them (as torchvision's make_grid):
/// H' = rows * (H + pad) + pad, W' = nrow * (W + pad) + pad,
/// rows = ceil(N / nrow); a pixel is round(255 * value).
torch::Tensor image_grid(
    const torch::Tensor& images, int64_t nrow = 8, int64_t pad = 2);

/// Lays out snapshots of a batch taken along a process (e.g. x_t of the
/// reverse SDE at a few times): `steps[j]` is [N, C, H, W] at step j, all the
/// same shape. Row i of the result shows sample i at steps 0..T-1, left to
/// right; i.e. image_grid of the [N * T, C, H, W] stack with nrow = T.
torch::Tensor denoise_strip(
    const std::vector<torch::Tensor>& steps, int64_t pad = 2);

/// One set of 2-D points in a scatter plot, with its colour.
struct PointSet {
  /// [N, 2] floating (any device): columns x and y.
  torch::Tensor points;
  /// Colour of its dots.
  Rgb color{31, 119, 180};
};

/// Options of scatter_plot.
///
/// Example: `scatter_plot({{data, {150,150,150}}, {samples, {214,39,40}}},
///                        ScatterOptions().range(-1.6, 1.6).title("step 40"));`
struct ScatterOptions {
  /// Sets lo and hi.
  ScatterOptions& range(double lo, double hi) {
    lo_ = lo;
    hi_ = hi;
    return *this;
  }
  /// Width and height of the square panel in pixels. Default: 256.
  TORCH_ARG(int64_t, size) = 256;
  /// Lower end of the range shown on both axes (points outside are dropped).
  /// Default: -2.
  TORCH_ARG(double, lo) = -2.0;
  /// Upper end of that range. Default: 2.
  TORCH_ARG(double, hi) = 2.0;
  /// Dot radius in pixels (a (2r+1)^2 square). Default: 1.
  TORCH_ARG(int64_t, radius) = 1;
  /// Opacity of each dot, in (0, 1]. Default: 0.6.
  TORCH_ARG(double, alpha) = 0.6;
  /// Text drawn at the top left (ASCII; empty for none). Default: "".
  TORCH_ARG(std::string, title) = "";
};

/// Draws the point sets, in order, over each other on one white square panel
/// with a grey frame and axes through 0: pixel column
/// round((x - lo) / (hi - lo) * (size - 1)), row likewise from the top for y.
/// Returns uint8 [size, size, 3].
torch::Tensor scatter_plot(
    const std::vector<PointSet>& sets,
    const ScatterOptions& options = ScatterOptions());

/// Tiles equally sized uint8 [H, W, 3] panels into rows of `ncol` on a white
/// background with `pad` pixels between and around them (e.g. 20 panels of
/// q(x_t) in 4 rows of 5). Returns uint8
/// [rows * (H + pad) + pad, ncol * (W + pad) + pad, 3].
torch::Tensor panel_grid(
    const std::vector<torch::Tensor>& panels, int64_t ncol, int64_t pad = 4);

/// Options of line_plot.
struct LinePlotOptions {
  /// Image width in pixels. Default: 480.
  TORCH_ARG(int64_t, width) = 480;
  /// Image height in pixels. Default: 320.
  TORCH_ARG(int64_t, height) = 320;
  /// Logarithmic y axis (every value must be > 0). Default: false.
  TORCH_ARG(bool, log_y) = false;
  /// Line colour. Default: blue.
  TORCH_ARG(Rgb, color) = Rgb{31, 119, 180};
  /// Text drawn at the top left. Default: "".
  TORCH_ARG(std::string, title) = "";
};

/// Plots ys[i] against i (e.g. a loss curve) inside a frame, y from min to
/// max (of log10 y with log_y), min and max written on the axis. Values must
/// be finite; at least one. Returns uint8 [height, width, 3].
torch::Tensor line_plot(
    const std::vector<double>& ys,
    const LinePlotOptions& options = LinePlotOptions());

/// Draws ASCII `text` (stb_easy_font's 5x7-ish glyphs, scaled by `scale`) on a
/// uint8 [H, W, 3] image in place, top left corner at (x, y); clipped.
void draw_text(
    torch::Tensor& image,
    const std::string& text,
    int64_t x,
    int64_t y,
    Rgb color = Rgb{0, 0, 0},
    int64_t scale = 1);

}  // namespace sbgm::io
