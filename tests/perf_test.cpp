#include <sbgm/perf.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace {

// glibc serves blocks above its mmap threshold (at most 32 MiB by default)
// with their own mmap, counted in mallinfo2().hblks, and unmaps them on
// free. After tune_cpu_allocator() a 64 MiB tensor must come from the heap.
TEST(Perf, TunedAllocatorKeepsLargeTensorsOnTheHeap) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
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
