#pragma once

/// \file
/// Animated GIF output (giflib), e.g. a sampler's trajectory frame by frame.

#include <torch/arg.h>
#include <torch/types.h>

#include <string>
#include <vector>

namespace sbgm::io {

/// Options of save_gif.
struct GifOptions {
  /// Delay between frames in hundredths of a second (1..65535). Default: 10.
  TORCH_ARG(int64_t, delay_cs) = 10;
  /// How often the animation repeats; 0 loops forever (NETSCAPE2.0
  /// extension). Default: 0.
  TORCH_ARG(int64_t, loop_count) = 0;
  /// Extra delay on the last frame, in hundredths of a second. Default: 0.
  TORCH_ARG(int64_t, last_frame_extra_cs) = 0;
};

/// Writes frames (uint8 [H, W, 3] RGB or [H, W] gray, all the same size) as
/// an animated GIF89a. Colours are mapped to a fixed 256-entry palette: the
/// 6x6x6 colour cube plus 40 greys (grey pixels map to the nearest grey).
void save_gif(
    const std::string& path,
    const std::vector<torch::Tensor>& frames,
    const GifOptions& options = GifOptions());

}  // namespace sbgm::io
