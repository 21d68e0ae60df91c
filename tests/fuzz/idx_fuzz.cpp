// libFuzzer target for the IDX parser (src/data/idx.cpp, torch-free).
//
// Each input is parsed from memory as an images (3-d) and a labels (1-d)
// file, and also written to a temporary file and read through the file path
// (plain or gzip, told apart by content), so both paths see the same bytes.
// Any IdxError is an expected rejection; a crash, sanitizer report, leak,
// hang or huge allocation is a bug.
//
// Build and run (clang):
//   cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ \
//     -DSBGM_BUILD_FUZZERS=ON -DSBGM_BUILD_TESTS=OFF -DSBGM_BUILD_EXAMPLES=OFF
//   cmake --build build-fuzz --target idx_fuzz
//   mkdir -p corpus && cp tests/data/mnist-tiny/* corpus/
//   ./build-fuzz/tests/fuzz/idx_fuzz corpus -max_total_time=300
//   -rss_limit_mb=2048
// or by hand, without CMake:
//   clang++ -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -Isrc \
//     tests/fuzz/idx_fuzz.cpp src/data/idx.cpp -lz -o idx_fuzz

#include <unistd.h>

#include <cstdio>
#include <string>

#include "data/idx.h"

namespace {

std::string temp_path() {
  return "/tmp/sbgm_idx_fuzz_" + std::to_string(getpid());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sbgm::detail;
  for (int ndim : {1, 3}) {
    try {
      IdxArray a = parse_idx_buffer(data, size, ndim, "input");
      uint64_t n = 1;
      for (int64_t d : a.dims) {
        n *= static_cast<uint64_t>(d);
      }
      if (n != a.data.size()) {
        __builtin_trap();  // dims and data disagree
      }
    } catch (const IdxError&) {
    }
  }
  const std::string path = temp_path();
  if (std::FILE* f = std::fopen(path.c_str(), "wb")) {
    std::fwrite(data, 1, size, f);
    std::fclose(f);
    for (int ndim : {1, 3}) {
      try {
        IdxArray a = read_idx_file(path, ndim);
        uint64_t n = 1;
        for (int64_t d : a.dims) {
          n *= static_cast<uint64_t>(d);
        }
        if (n != a.data.size()) {
          __builtin_trap();
        }
      } catch (const IdxError&) {
      }
      try {
        (void)peek_idx_dims(path, ndim);
      } catch (const IdxError&) {
      }
    }
    std::remove(path.c_str());
  }
  return 0;
}
