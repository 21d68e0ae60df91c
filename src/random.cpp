#include "sbgm/random.h"

#include <ATen/Context.h>
#include <torch/cuda.h>

#include <mutex>

namespace sbgm {

void check_device(torch::Device device, const char* where) {
  if (!device.is_cuda()) {
    TORCH_CHECK(
        device.is_cpu(),
        where,
        ": device ",
        device,
        " is not supported (sbgm runs on cpu and cuda)");
    return;
  }
  TORCH_CHECK(
      at::hasCUDA(),
      where,
      ": device ",
      device,
      " was asked for, but this LibTorch was built without CUDA (Debian's "
      "libtorch-dev is CPU-only). For CUDA, build sbgm against an official "
      "CUDA LibTorch 2.x or the one inside a CUDA PyTorch: "
      "CMAKE_PREFIX_PATH=$(python3 -c 'import "
      "torch;print(torch.utils.cmake_prefix_path)') scripts/build.sh");
  TORCH_CHECK(
      torch::cuda::is_available(),
      where,
      ": device ",
      device,
      " was asked for, but no CUDA GPU is visible");
  TORCH_CHECK(
      !device.has_index() ||
          device.index() < static_cast<int>(torch::cuda::device_count()),
      where,
      ": device ",
      device,
      " does not exist; this machine has ",
      torch::cuda::device_count(),
      " CUDA device(s)");
}

torch::Generator make_generator(uint64_t seed, torch::Device device) {
  check_device(device, "make_generator");
  at::Generator base = at::globalContext().defaultGenerator(device);
  torch::Generator gen;
  {
    std::lock_guard<std::mutex> lock(base.mutex());
    gen = base.clone();
  }
  gen.set_current_seed(seed);
  return gen;
}

}  // namespace sbgm
