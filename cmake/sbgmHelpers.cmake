# Helpers shared by the library, tests, examples and benchmarks.

# Warnings and language settings for targets built from our own sources.
function(sbgm_target_defaults target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  set_target_properties(${target} PROPERTIES CXX_EXTENSIONS OFF)
endfunction()

# Sets SBGM_WITH_<NAME> (upper case) to whether `found_var` is true: an
# optional extra, skipped with a status message when missing.
macro(sbgm_optional name found_var what)
  string(TOUPPER ${name} _sbgm_up)
  if(${found_var})
    set(SBGM_WITH_${_sbgm_up} ON)
  else()
    set(SBGM_WITH_${_sbgm_up} OFF)
    message(STATUS "sbgm: ${what} not found: sbgm::${name}, and what needs it, skipped")
  endif()
endmacro()

# One library of the package: `target`, exported and aliased as
# sbgm::<export_name>, with our headers, C++17 and our warnings. Libraries
# besides the core reuse its precompiled torch header.
function(sbgm_library target export_name)
  add_library(sbgm::${export_name} ALIAS ${target})
  target_compile_features(${target} PUBLIC cxx_std_17)
  set_target_properties(${target} PROPERTIES
    EXPORT_NAME ${export_name}
    CXX_EXTENSIONS OFF
    POSITION_INDEPENDENT_CODE ON
    VERSION ${PROJECT_VERSION}
    SOVERSION ${PROJECT_VERSION_MAJOR})
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  # Private helpers (src/internal.h) for sources in subfolders of src/.
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR}/src)
  sbgm_target_defaults(${target})
  if(SBGM_USE_PCH AND NOT target STREQUAL "sbgm")
    # The core's export macro (nothing reads it) keeps the flags the same, so
    # that its precompiled header is valid here.
    set_target_properties(${target} PROPERTIES DEFINE_SYMBOL sbgm_EXPORTS)
    target_precompile_headers(${target} REUSE_FROM sbgm)
  endif()
endfunction()

# Reuses one precompiled torch header across our executables. The library's
# own cannot be shared with them: it is built position-independent.
function(sbgm_reuse_pch target)
  if(NOT SBGM_USE_PCH)
    return()
  endif()
  if(NOT TARGET sbgm_exe_pch)
    file(WRITE ${PROJECT_BINARY_DIR}/sbgm_exe_pch.cpp "// precompiled header carrier\n")
    add_library(sbgm_exe_pch OBJECT ${PROJECT_BINARY_DIR}/sbgm_exe_pch.cpp)
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

# Makes the imported targets that this directory's find_package calls
# created global (CMake >= 3.21 lists them; before, LibTorch's known ones),
# so that a parent project linking sbgm's targets can resolve them.
function(sbgm_share_imported_targets)
  if(CMAKE_VERSION VERSION_GREATER_EQUAL 3.21)
    get_property(targets DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR} PROPERTY IMPORTED_TARGETS)
  else()
    set(targets torch torch_library torch_cpu torch_cpu_library c10
      torch_cuda torch_cuda_library c10_cuda)
  endif()
  foreach(t IN LISTS targets)
    if(TARGET ${t})
      get_target_property(is_global ${t} IMPORTED_GLOBAL)
      if(NOT is_global)
        set_target_properties(${t} PROPERTIES IMPORTED_GLOBAL TRUE)
      endif()
    endif()
  endforeach()
endfunction()
