# cmake -DSOURCE=<sbgm> -DPROJECT=<this folder> -DBUILD=<dir> -DGENERATOR=<g>
#       [-DPREFIX_PATH=...] [-DLAUNCHER=ccache] -P run.cmake
# Configures the parent project (its CMakeLists asserts that sbgm changed
# none of its settings), builds its program on the sbgm core, runs it, and
# checks that sbgm generated no install rules.
file(REMOVE_RECURSE ${BUILD})
set(args -S ${PROJECT} -B ${BUILD} -G ${GENERATOR} -DSBGM_SOURCE_DIR=${SOURCE}
  # The parent's choice, for a quick build: one unity translation unit per
  # 16 sources, no precompiled header.
  -DCMAKE_UNITY_BUILD=ON -DCMAKE_UNITY_BUILD_BATCH_SIZE=16 -DSBGM_USE_PCH=OFF)
if(PREFIX_PATH)
  list(APPEND args "-DCMAKE_PREFIX_PATH=${PREFIX_PATH}")
endif()
if(LAUNCHER)
  list(APPEND args -DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER})
endif()
macro(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed: ${rc}")
  endif()
endmacro()
run("configure" ${CMAKE_COMMAND} ${args})
file(READ ${BUILD}/_sbgm/cmake_install.cmake install_rules)
if(install_rules MATCHES "file\\(INSTALL")
  message(FATAL_ERROR "sbgm generated install rules as a subproject")
endif()
run("build" ${CMAKE_COMMAND} --build ${BUILD} --target sbgm_parent_app)
run("the parent's program" ${BUILD}/sbgm_parent_app)
