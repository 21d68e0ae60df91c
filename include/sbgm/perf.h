#pragma once

/// \file
/// Process-wide settings that make LibTorch's CPU paths fast.

namespace sbgm {

/// Keeps freed tensor memory in the process instead of handing it back to
/// the kernel after every step (glibc only; elsewhere it does nothing and
/// returns false).
///
/// LibTorch's CPU allocator takes every buffer from malloc. glibc serves
/// blocks above its mmap threshold (at most 32 MiB, adjusted on the fly)
/// with a fresh mmap and unmaps them on free, so each training or sampling
/// step of an image model page-faults its activations in again: measured
/// here, one forward pass of the MNIST U-Net on 64 images took 153 ms
/// instead of 98 ms, with ~30,000 page faults per pass. This sets
/// M_MMAP_THRESHOLD to 1 GiB (so such blocks come from the heap and are
/// reused) and M_TRIM_THRESHOLD to 1 GiB (so the heap is not shrunk after
/// every step). The cost: memory freed by the process is kept for reuse
/// rather than returned to the system. Call it once, early in main(); the
/// demos and benchmarks do.
bool tune_cpu_allocator();

/// Sets the CPU threads of LibTorch (torch::set_num_threads) and of the BLAS
/// under it. Debian's LibTorch calls OpenBLAS (the pthreads build), whose
/// own thread pool ignores torch::set_num_threads and competes with
/// LibTorch's OpenMP workers, which spin for a while after each parallel
/// region. Measured on this 2-core machine, with 2 LibTorch threads:
///   - OpenBLAS at 2 threads: an MNIST U-Net training step (batch 32) took
///     111-215 ms, a sampling step of 64 images 54-66 ms, half the cycles
///     spent spinning in libgomp and sched_yield;
///   - OpenBLAS at 1 thread: 79-81 ms and 48 ms. A convolution's matrix
///     products already run in LibTorch's parallel loops, one per thread.
/// So `blas_threads` defaults to 1. Raise it for large matrix products
/// outside LibTorch's parallel loops (a wide MLP on many cores), and then
/// set OMP_WAIT_POLICY=passive in the environment so the idle OpenMP
/// workers sleep. Returns true when an OpenBLAS was found and set as well.
bool set_num_threads(int num_threads, int blas_threads = 1);

}  // namespace sbgm
