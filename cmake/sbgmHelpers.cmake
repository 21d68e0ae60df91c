# Helpers shared by the library, tests, examples and benchmarks.

# Warnings and language settings for targets built from our own sources.
function(sbgm_target_defaults target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  set_target_properties(${target} PROPERTIES CXX_EXTENSIONS OFF)
endfunction()

# Reuses the library's precompiled torch header in an executable of ours.
function(sbgm_reuse_pch target)
  if(SBGM_USE_PCH)
    target_precompile_headers(${target} REUSE_FROM sbgm)
  endif()
endfunction()

# Sets SBGM_TORCH_HAS_CUDA when the Torch package found was built with CUDA.
macro(sbgm_detect_torch_cuda)
  set(SBGM_TORCH_HAS_CUDA OFF)
  if(TARGET torch_cuda OR TARGET c10_cuda OR CAFFE2_USE_CUDA)
    set(SBGM_TORCH_HAS_CUDA ON)
  endif()
  message(STATUS "sbgm: Torch ${Torch_VERSION}, CUDA support: ${SBGM_TORCH_HAS_CUDA}")
endmacro()
