# Helpers shared by the library, tests, examples and benchmarks.

# Warnings and language settings for targets built from our own sources.
function(sbgm_target_defaults target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  set_target_properties(${target} PROPERTIES CXX_EXTENSIONS OFF)
endfunction()

# Reuses one precompiled torch header across our executables. The library's
# own cannot be shared with them: it is built position-independent.
function(sbgm_reuse_pch target)
  if(NOT SBGM_USE_PCH)
    return()
  endif()
  if(NOT TARGET sbgm_exe_pch)
    file(WRITE ${CMAKE_BINARY_DIR}/sbgm_exe_pch.cpp "// precompiled header carrier\n")
    add_library(sbgm_exe_pch OBJECT ${CMAKE_BINARY_DIR}/sbgm_exe_pch.cpp)
    target_link_libraries(sbgm_exe_pch PRIVATE sbgm::sbgm)
    sbgm_target_defaults(sbgm_exe_pch)
    target_precompile_headers(sbgm_exe_pch PRIVATE <torch/torch.h>)
  endif()
  target_precompile_headers(${target} REUSE_FROM sbgm_exe_pch)
endfunction()

# Sets SBGM_TORCH_HAS_CUDA when the Torch package found was built with CUDA.
macro(sbgm_detect_torch_cuda)
  set(SBGM_TORCH_HAS_CUDA OFF)
  if(TARGET torch_cuda OR TARGET c10_cuda OR CAFFE2_USE_CUDA)
    set(SBGM_TORCH_HAS_CUDA ON)
  endif()
  message(STATUS "sbgm: Torch ${Torch_VERSION}, CUDA support: ${SBGM_TORCH_HAS_CUDA}")
endmacro()
