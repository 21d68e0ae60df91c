#include "sbgm/perf.h"

#if defined(__GLIBC__)
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

}  // namespace sbgm
