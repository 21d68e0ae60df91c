// libFuzzer target for the model-file reader: the safetensors container
// (header length, JSON header, offsets, dtypes, shapes, CRC-32) and the
// model config it carries (process, network, prediction, data transform).
//
// Each input is written to a temporary file and read with
// load_safetensors, read_training_info and load_model; a model that loads is
// called once on a small batch. A c10::Error is an expected rejection;
// anything else (a crash, a sanitizer report, another exception type, a
// hang, a huge allocation) is a bug. Built and run by scripts/fuzz.sh
// (clang; the reader's sources instrumented, the rest of sbgm and LibTorch
// from build/).

#include <c10/util/Exception.h>
#include <c10/util/Logging.h>
#include <torch/types.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "sbgm/io/safetensors.h"
#include "sbgm/model_file.h"

// Every rejection throws a c10::Error, which by default captures and
// symbolizes a stack trace: most of the time of an input. Not needed here.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  c10::SetStackTraceFetcher([] { return std::string(); });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path =
      "/tmp/sbgm_model_fuzz_" + std::to_string(getpid()) + ".safetensors";
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    return 0;
  }
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    (void)sbgm::io::load_safetensors(path);
  } catch (const c10::Error&) {
  }
  try {
    (void)sbgm::read_training_info(path);
  } catch (const c10::Error&) {
  }
  try {
    auto m = sbgm::load_model(path);
    torch::NoGradGuard no_grad;
    std::vector<int64_t> shape = {2};
    for (int64_t d : m.sample_shape) {
      shape.push_back(d);
    }
    auto x = torch::zeros(shape);
    auto t = torch::full({2}, 0.5 * m.process->t_max());
    if (m.model.is_conditional()) {
      (void)m.model(x, t, torch::zeros({2}, torch::kLong));
    } else {
      (void)m.model(x, t);
    }
  } catch (const c10::Error&) {
  }
  std::remove(path.c_str());
  return 0;
}
