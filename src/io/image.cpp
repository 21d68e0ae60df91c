#include "sbgm/io/image.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <stb_easy_font.h>
#include <stb_image_write.h>
#pragma GCC diagnostic pop

namespace sbgm::io {
namespace {

torch::Tensor canvas(int64_t h, int64_t w, uint8_t value = 255) {
  return torch::full({h, w, 3}, value, torch::kByte);
}

void check_image(const torch::Tensor& img, const char* where) {
  TORCH_CHECK(img.defined(), where, ": the image is undefined");
  TORCH_CHECK(
      img.scalar_type() == torch::kByte,
      where,
      ": expected a uint8 image, got ",
      img.scalar_type());
  TORCH_CHECK(
      img.dim() == 2 ||
          (img.dim() == 3 && (img.size(2) == 3 || img.size(2) == 1)),
      where,
      ": expected an image [H, W, 3], [H, W, 1] or [H, W], got ",
      img.sizes());
  TORCH_CHECK(
      img.size(0) > 0 && img.size(1) > 0,
      where,
      ": the image is empty: ",
      img.sizes());
}

// Alpha-blends a colour into pixel (row, col) if inside.
void blend(
    uint8_t* p,
    int64_t h,
    int64_t w,
    int64_t row,
    int64_t col,
    Rgb c,
    double a) {
  if (row < 0 || col < 0 || row >= h || col >= w) {
    return;
  }
  uint8_t* q = p + (row * w + col) * 3;
  const uint8_t rgb[3] = {c.r, c.g, c.b};
  for (int k = 0; k < 3; ++k) {
    q[k] = static_cast<uint8_t>(std::lround((1 - a) * q[k] + a * rgb[k]));
  }
}

void fill_rect(
    torch::Tensor& img, int64_t r0, int64_t c0, int64_t r1, int64_t c1, Rgb c) {
  int64_t h = img.size(0);
  int64_t w = img.size(1);
  uint8_t* p = img.data_ptr<uint8_t>();
  for (int64_t r = std::max<int64_t>(r0, 0); r < std::min(r1, h); ++r) {
    for (int64_t col = std::max<int64_t>(c0, 0); col < std::min(c1, w); ++col) {
      uint8_t* q = p + (r * w + col) * 3;
      q[0] = c.r;
      q[1] = c.g;
      q[2] = c.b;
    }
  }
}

void frame(
    torch::Tensor& img, int64_t r0, int64_t c0, int64_t r1, int64_t c1, Rgb c) {
  fill_rect(img, r0, c0, r0 + 1, c1, c);
  fill_rect(img, r1 - 1, c0, r1, c1, c);
  fill_rect(img, r0, c0, r1, c0 + 1, c);
  fill_rect(img, r0, c1 - 1, r1, c1, c);
}

void line(
    torch::Tensor& img, int64_t r0, int64_t c0, int64_t r1, int64_t c1, Rgb c) {
  int64_t h = img.size(0);
  int64_t w = img.size(1);
  uint8_t* p = img.data_ptr<uint8_t>();
  int64_t dc = std::abs(c1 - c0);
  int64_t dr = -std::abs(r1 - r0);
  int64_t sc = c0 < c1 ? 1 : -1;
  int64_t sr = r0 < r1 ? 1 : -1;
  int64_t err = dc + dr;
  while (true) {
    blend(p, h, w, r0, c0, c, 1.0);
    if (r0 == r1 && c0 == c1) {
      break;
    }
    int64_t e2 = 2 * err;
    if (e2 >= dr) {
      err += dr;
      c0 += sc;
    }
    if (e2 <= dc) {
      err += dc;
      r0 += sr;
    }
  }
}

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

}  // namespace

void save_png(const std::string& path, const torch::Tensor& image) {
  check_image(image, "save_png");
  auto img = image.detach().to(torch::kCPU).contiguous();
  int h = static_cast<int>(img.size(0));
  int w = static_cast<int>(img.size(1));
  int comp = img.dim() == 2 ? 1 : static_cast<int>(img.size(2));
  int ok = stbi_write_png(path.c_str(), w, h, comp, img.data_ptr(), w * comp);
  TORCH_CHECK(ok != 0, "save_png: could not write ", path);
}

torch::Tensor image_grid(
    const torch::Tensor& images, int64_t nrow, int64_t pad) {
  TORCH_CHECK(images.defined(), "image_grid: images is undefined");
  TORCH_CHECK(
      images.dim() == 4 && (images.size(1) == 1 || images.size(1) == 3) &&
          images.size(0) > 0 && images.size(2) > 0 && images.size(3) > 0,
      "image_grid: expected images [N, C, H, W] with C = 1 or 3 and N > 0, "
      "got ",
      images.sizes());
  TORCH_CHECK(
      images.is_floating_point(),
      "image_grid: expected floating images in [0, 1], got ",
      images.scalar_type());
  TORCH_CHECK(nrow > 0, "image_grid: nrow must be positive, got ", nrow);
  TORCH_CHECK(pad >= 0, "image_grid: pad must be >= 0, got ", pad);
  int64_t n = images.size(0);
  int64_t h = images.size(2);
  int64_t w = images.size(3);
  int64_t cols = std::min(nrow, n);
  int64_t rows = (n + nrow - 1) / nrow;
  auto x = images.detach()
               .to(torch::kCPU, torch::kDouble)
               .clamp(0, 1)
               .mul(255)
               .round()
               .to(torch::kByte)
               .expand({n, 3, h, w})
               .permute({0, 2, 3, 1});
  auto out = canvas(rows * (h + pad) + pad, cols * (w + pad) + pad);
  for (int64_t i = 0; i < n; ++i) {
    int64_t r = pad + (i / nrow) * (h + pad);
    int64_t c = pad + (i % nrow) * (w + pad);
    out.slice(0, r, r + h).slice(1, c, c + w).copy_(x[i]);
  }
  return out;
}

torch::Tensor denoise_strip(
    const std::vector<torch::Tensor>& steps, int64_t pad) {
  TORCH_CHECK(!steps.empty(), "denoise_strip: no steps");
  for (size_t j = 0; j < steps.size(); ++j) {
    TORCH_CHECK(
        steps[j].defined() && steps[j].dim() == 4 &&
            steps[j].sizes() == steps[0].sizes(),
        "denoise_strip: step ",
        j,
        " must be [N, C, H, W] of the same shape as step 0 ",
        steps[0].defined() ? c10::str(steps[0].sizes())
                           : std::string("undefined"),
        ", got ",
        steps[j].defined() ? c10::str(steps[j].sizes())
                           : std::string("undefined"));
  }
  auto t = static_cast<int64_t>(steps.size());
  auto stacked = torch::stack(steps, 1);  // [N, T, C, H, W]
  auto s = stacked.sizes();
  return image_grid(stacked.reshape({s[0] * t, s[2], s[3], s[4]}), t, pad);
}

torch::Tensor scatter_plot(
    const std::vector<PointSet>& sets, const ScatterOptions& o) {
  TORCH_CHECK(
      o.size() >= 8 && o.size() <= 16384,
      "scatter_plot: size must be in [8, 16384], got ",
      o.size());
  TORCH_CHECK(
      std::isfinite(o.lo()) && std::isfinite(o.hi()) && o.lo() < o.hi(),
      "scatter_plot: need finite lo < hi, got lo ",
      o.lo(),
      ", hi ",
      o.hi());
  TORCH_CHECK(
      o.radius() >= 0 && o.radius() <= 64,
      "scatter_plot: radius must be in [0, 64], got ",
      o.radius());
  TORCH_CHECK(
      o.alpha() > 0 && o.alpha() <= 1,
      "scatter_plot: alpha must be in (0, 1], got ",
      o.alpha());
  const int64_t s = o.size();
  auto img = canvas(s, s);
  auto to_px = [&](double v) {
    return (v - o.lo()) / (o.hi() - o.lo()) * static_cast<double>(s - 1);
  };
  const Rgb grey{200, 200, 200};
  if (o.lo() < 0 && o.hi() > 0) {
    int64_t z = std::lround(to_px(0));
    fill_rect(img, s - 1 - z, 0, s - z, s, grey);
    fill_rect(img, 0, z, s, z + 1, grey);
  }
  uint8_t* p = img.data_ptr<uint8_t>();
  for (size_t k = 0; k < sets.size(); ++k) {
    const auto& pts = sets[k].points;
    TORCH_CHECK(
        pts.defined() && pts.dim() == 2 && pts.size(1) == 2,
        "scatter_plot: point set ",
        k,
        " must be [N, 2], got ",
        pts.defined() ? c10::str(pts.sizes()) : std::string("undefined"));
    TORCH_CHECK(
        pts.is_floating_point(),
        "scatter_plot: point set ",
        k,
        " must be floating, got ",
        pts.scalar_type());
    auto c = pts.detach().to(torch::kCPU, torch::kDouble).contiguous();
    auto a = c.accessor<double, 2>();
    for (int64_t i = 0; i < c.size(0); ++i) {
      double x = a[i][0];
      double y = a[i][1];
      if (!(x >= o.lo() && x <= o.hi() && y >= o.lo() && y <= o.hi())) {
        continue;  // outside the range, or NaN
      }
      int64_t col = std::lround(to_px(x));
      int64_t row = s - 1 - std::lround(to_px(y));
      for (int64_t dr = -o.radius(); dr <= o.radius(); ++dr) {
        for (int64_t dc = -o.radius(); dc <= o.radius(); ++dc) {
          blend(p, s, s, row + dr, col + dc, sets[k].color, o.alpha());
        }
      }
    }
  }
  frame(img, 0, 0, s, s, Rgb{120, 120, 120});
  if (!o.title().empty()) {
    draw_text(img, o.title(), 4, 4, Rgb{0, 0, 0}, s >= 192 ? 2 : 1);
  }
  return img;
}

torch::Tensor panel_grid(
    const std::vector<torch::Tensor>& panels, int64_t ncol, int64_t pad) {
  TORCH_CHECK(!panels.empty(), "panel_grid: no panels");
  TORCH_CHECK(ncol > 0, "panel_grid: ncol must be positive, got ", ncol);
  TORCH_CHECK(pad >= 0, "panel_grid: pad must be >= 0, got ", pad);
  for (size_t i = 0; i < panels.size(); ++i) {
    check_image(panels[i], "panel_grid");
    TORCH_CHECK(
        panels[i].dim() == 3 && panels[i].size(2) == 3 &&
            panels[i].sizes() == panels[0].sizes(),
        "panel_grid: panel ",
        i,
        " is ",
        panels[i].sizes(),
        "; every panel must be [H, W, 3] of the same size as panel 0 ",
        panels[0].sizes());
  }
  int64_t n = static_cast<int64_t>(panels.size());
  int64_t h = panels[0].size(0);
  int64_t w = panels[0].size(1);
  int64_t cols = std::min(ncol, n);
  int64_t rows = (n + ncol - 1) / ncol;
  auto out = canvas(rows * (h + pad) + pad, cols * (w + pad) + pad);
  for (int64_t i = 0; i < n; ++i) {
    int64_t r = pad + (i / ncol) * (h + pad);
    int64_t c = pad + (i % ncol) * (w + pad);
    out.slice(0, r, r + h).slice(1, c, c + w).copy_(panels[i].to(torch::kCPU));
  }
  return out;
}

torch::Tensor line_plot(
    const std::vector<double>& ys, const LinePlotOptions& o) {
  TORCH_CHECK(!ys.empty(), "line_plot: no values");
  TORCH_CHECK(
      o.width() >= 64 && o.height() >= 48 && o.width() <= 16384 &&
          o.height() <= 16384,
      "line_plot: size must be at least 64x48 and at most 16384, got ",
      o.width(),
      "x",
      o.height());
  std::vector<double> v(ys.size());
  for (size_t i = 0; i < ys.size(); ++i) {
    TORCH_CHECK(
        std::isfinite(ys[i]),
        "line_plot: value ",
        i,
        " is not finite: ",
        ys[i]);
    TORCH_CHECK(
        !o.log_y() || ys[i] > 0,
        "line_plot: log_y needs positive values; value ",
        i,
        " is ",
        ys[i]);
    v[i] = o.log_y() ? std::log10(ys[i]) : ys[i];
  }
  double lo = *std::min_element(v.begin(), v.end());
  double hi = *std::max_element(v.begin(), v.end());
  if (hi - lo < 1e-12 * std::max(1.0, std::abs(hi))) {
    lo -= 0.5;
    hi += 0.5;
  }
  const int64_t W = o.width();
  const int64_t H = o.height();
  const int64_t left = 56;
  const int64_t right = W - 8;
  const int64_t top = o.title().empty() ? 8 : 24;
  const int64_t bottom = H - 16;
  auto img = canvas(H, W);
  const Rgb grey{220, 220, 220};
  for (int k = 1; k < 4; ++k) {
    int64_t r = top + (bottom - top) * k / 4;
    fill_rect(img, r, left, r + 1, right, grey);
  }
  auto px = [&](size_t i) {
    return ys.size() == 1 ? left
                          : left + static_cast<int64_t>(std::lround(
                                       static_cast<double>(i) /
                                       static_cast<double>(ys.size() - 1) *
                                       static_cast<double>(right - 1 - left)));
  };
  auto py = [&](double y) {
    return bottom - 1 -
           static_cast<int64_t>(std::lround(
               (y - lo) / (hi - lo) * static_cast<double>(bottom - 1 - top)));
  };
  for (size_t i = 0; i + 1 < v.size(); ++i) {
    line(img, py(v[i]), px(i), py(v[i + 1]), px(i + 1), o.color());
  }
  if (v.size() == 1) {
    fill_rect(img, py(v[0]) - 1, px(0) - 1, py(v[0]) + 2, px(0) + 2, o.color());
  }
  frame(img, top, left, bottom, right, Rgb{120, 120, 120});
  auto label = [&](double y) { return fmt(o.log_y() ? std::pow(10.0, y) : y); };
  draw_text(img, label(hi), 2, top, Rgb{0, 0, 0});
  draw_text(img, label(lo), 2, bottom - 10, Rgb{0, 0, 0});
  draw_text(img, "0", left, bottom + 3, Rgb{0, 0, 0});
  draw_text(
      img, std::to_string(ys.size() - 1), right - 40, bottom + 3, Rgb{0, 0, 0});
  if (!o.title().empty()) {
    draw_text(img, o.title(), left, 4, Rgb{0, 0, 0});
  }
  return img;
}

void draw_text(
    torch::Tensor& image,
    const std::string& text,
    int64_t x,
    int64_t y,
    Rgb color,
    int64_t scale) {
  check_image(image, "draw_text");
  TORCH_CHECK(
      image.dim() == 3 && image.size(2) == 3 && image.is_contiguous() &&
          image.device().is_cpu(),
      "draw_text: expected a contiguous CPU image [H, W, 3], got ",
      image.sizes());
  TORCH_CHECK(
      scale >= 1 && scale <= 16,
      "draw_text: scale must be in [1, 16], got ",
      scale);
  if (text.empty()) {
    return;
  }
  // stb_easy_font emits axis-aligned quads, 4 vertices of 16 bytes each;
  // roughly 270 bytes per character are enough.
  std::vector<char> vbuf(text.size() * 300 + 1024);
  std::string copy = text;
  unsigned char white[4] = {255, 255, 255, 255};
  int quads = stb_easy_font_print(
      0, 0, &copy[0], white, vbuf.data(), static_cast<int>(vbuf.size()));
  for (int q = 0; q < quads; ++q) {
    const float* v = reinterpret_cast<const float*>(vbuf.data() + q * 64);
    float x0 = std::min(v[0], v[8]);
    float x1 = std::max(v[0], v[8]);
    float y0 = std::min(v[1], v[9]);
    float y1 = std::max(v[1], v[9]);
    fill_rect(
        image,
        y + static_cast<int64_t>(std::lround(y0)) * scale,
        x + static_cast<int64_t>(std::lround(x0)) * scale,
        y + static_cast<int64_t>(std::lround(y1)) * scale,
        x + static_cast<int64_t>(std::lround(x1)) * scale,
        color);
  }
}

}  // namespace sbgm::io
