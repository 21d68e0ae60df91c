#include <gtest/gtest.h>
#include <sbgm/perf.h>
#include <torch/torch.h>

#include "support.h"

#if defined(__GLIBC__)
#include <dlfcn.h>
#include <malloc.h>
#endif

namespace {

// glibc serves blocks above its mmap threshold (at most 32 MiB by default)
// with their own mmap, counted in mallinfo2().hblks, and unmaps them on
// free. After tune_cpu_allocator() a 64 MiB tensor must come from the heap.
TEST(Perf, TunedAllocatorKeepsLargeTensorsOnTheHeap) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer replaces glibc's malloc";
#elif defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
  ASSERT_TRUE(sbgm::tune_cpu_allocator());
  const auto before = mallinfo2().hblks;
  auto t = torch::ones({16 * 1024 * 1024});  // float32: 64 MiB
  EXPECT_EQ(mallinfo2().hblks, before)
      << "the 64 MiB tensor was served by mmap";
  EXPECT_EQ(t.sum().item<float>(), 16.0f * 1024 * 1024);
#else
  GTEST_SKIP() << "tune_cpu_allocator() acts on glibc >= 2.33 only";
#endif
}

}  // namespace

namespace {

TEST(Perf, SetNumThreadsSetsTorchAndOpenBlas) {
  const int before = torch::get_num_threads();
  const bool blas = sbgm::set_num_threads(1);
  EXPECT_EQ(torch::get_num_threads(), 1);
#if defined(__GLIBC__)
  using GetFn = int (*)();
  auto get =
      reinterpret_cast<GetFn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  EXPECT_EQ(blas, get != nullptr);
  if (get != nullptr) {
    EXPECT_EQ(get(), 1);
  }
#endif
  // More LibTorch threads: OpenBLAS stays at one thread unless asked.
  sbgm::set_num_threads(2);
  EXPECT_EQ(torch::get_num_threads(), 2);
#if defined(__GLIBC__)
  if (get != nullptr) {
    EXPECT_EQ(get(), 1);
    sbgm::set_num_threads(2, 2);
    EXPECT_EQ(get(), 2);
  }
#endif
  EXPECT_THROW_MSG(
      sbgm::set_num_threads(2, 0),
      "set_num_threads: need at least one BLAS thread, got 0");
  sbgm::set_num_threads(before);
  EXPECT_EQ(torch::get_num_threads(), before);
  EXPECT_THROW(sbgm::set_num_threads(0), c10::Error);
  // Fails when no error is thrown, or when it does not name the value.
  bool threw = false;
  try {
    sbgm::set_num_threads(-2);
  } catch (const c10::Error& e) {
    threw = true;
    EXPECT_NE(
        std::string(e.what_without_backtrace()).find("got -2"),
        std::string::npos)
        << e.what_without_backtrace();
  }
  EXPECT_TRUE(threw) << "set_num_threads(-2) did not throw";
}

}  // namespace
