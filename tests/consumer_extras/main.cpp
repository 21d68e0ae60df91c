// Saves a model file and a PNG grid with the installed extras, loads the
// model back and samples from it. Usage: sbgm_consumer_extras OUT_DIR
#include <sbgm/io/image.h>
#include <sbgm/model_file.h>
#include <sbgm/sbgm.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

namespace {
int fail(const std::string& what) {
  std::cerr << "consumer_extras: " << what << "\n";
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  const std::string out = argc > 1 ? argv[1] : "consumer-extras-out";
  std::filesystem::create_directories(out);
  torch::manual_seed(0);

  sbgm::DiscreteProcess process(sbgm::Schedule::sigmoid(100, 1e-4, 0.12));
  sbgm::MLP net(sbgm::MLPOptions(/*input_dim=*/2).num_timesteps(100));
  const std::string model_path = out + "/model.safetensors";
  sbgm::save_model(model_path, net, sbgm::Prediction::Epsilon, process);
  auto loaded = sbgm::load_model(model_path, torch::kCPU);
  auto saved_params = net->parameters();
  auto loaded_params = loaded.network->parameters();
  if (saved_params.size() != loaded_params.size()) {
    return fail("parameter count differs after load");
  }
  for (size_t i = 0; i < saved_params.size(); ++i) {
    if (!torch::equal(saved_params[i], loaded_params[i])) {
      return fail("parameter " + std::to_string(i) + " differs after load");
    }
  }
  auto samples =
      sbgm::samplers::sample(loaded.model, *loaded.process, {16, 2}).samples;
  if (!torch::isfinite(samples).all().item<bool>()) {
    return fail("non-finite samples from the loaded model");
  }

  const std::string png_path = out + "/grid.png";
  sbgm::io::save_png(
      png_path, sbgm::io::image_grid(torch::rand({4, 1, 8, 8}), 2));
  std::ifstream png(png_path, std::ios::binary);
  char magic[4] = {};
  png.read(magic, 4);
  if (!png || std::string(magic + 1, 3) != "PNG") {
    return fail("no PNG written at " + png_path);
  }
  std::cout << "consumer_extras: model file and PNG grid in " << out << "\n";
  return 0;
}
