#include "sbgm/perf.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#if defined(__GLIBC__)
#include <dlfcn.h>
#include <malloc.h>
#endif

namespace sbgm {

bool tune_cpu_allocator() {
#if defined(__GLIBC__)
  const bool a = mallopt(M_MMAP_THRESHOLD, 1 << 30) == 1;
  const bool b = mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
  return a && b;
#else
  return false;
#endif
}

bool set_num_threads(int num_threads, int blas_threads) {
  TORCH_CHECK(
      num_threads > 0,
      "set_num_threads: need at least one thread, got ",
      num_threads);
  TORCH_CHECK(
      blas_threads > 0,
      "set_num_threads: need at least one BLAS thread, got ",
      blas_threads);
  at::set_num_threads(num_threads);
#if defined(__GLIBC__)
  // OpenBLAS, when LibTorch was linked against it (looked up at run time so
  // that other BLAS builds need nothing).
  using SetFn = void (*)(int);
  if (auto fn = reinterpret_cast<SetFn>(
          dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    fn(blas_threads);
    return true;
  }
#endif
  return false;
}

}  // namespace sbgm
