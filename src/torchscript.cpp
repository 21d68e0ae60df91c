#include "sbgm/torchscript.h"

#include <torch/script.h>

#include "sbgm/random.h"

namespace sbgm {

Model load_torchscript(
    const std::string& path,
    Prediction prediction,
    torch::Device device,
    int64_t discrete_steps) {
  check_device(device, "load_torchscript");
  TORCH_CHECK(
      discrete_steps >= 0,
      "load_torchscript: discrete_steps must be >= 0, got ",
      discrete_steps);
  torch::jit::Module module;
  try {
    module = torch::jit::load(path, device);
  } catch (const c10::Error& e) {
    TORCH_CHECK(
        false,
        "load_torchscript: cannot load '",
        path,
        "' as a TorchScript module: ",
        e.what_without_backtrace());
  }
  const auto method = module.find_method("forward");
  TORCH_CHECK(
      method.has_value(), "load_torchscript: '", path, "' has no forward");
  // The schema's first argument is the module itself.
  const auto& args = method->function().getSchema().arguments();
  TORCH_CHECK(
      args.size() == 3,
      "load_torchscript: the forward of '",
      path,
      "' takes ",
      args.size() - 1,
      " argument(s); expected forward(x, t)");
  module.eval();
  return Model(
      [module, path](const torch::Tensor& x, const torch::Tensor& t) mutable {
        auto out = module.forward({x, t});
        TORCH_CHECK(
            out.isTensor(),
            "load_torchscript: the forward of '",
            path,
            "' returned a ",
            out.tagKind(),
            ", not a tensor");
        return out.toTensor();
      },
      prediction,
      discrete_steps);
}

}  // namespace sbgm
