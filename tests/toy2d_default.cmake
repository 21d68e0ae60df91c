# Runs sbgm-swiss-roll's default run on one 2-D set and fails when the
# sliced-Wasserstein ratio to the data (metrics.json) exceeds BOUND.
# Called by ctest with -DEXE, -DDATASET, -DBOUND, -DOUT.
file(REMOVE_RECURSE ${OUT})
execute_process(
  COMMAND ${EXE} --dataset ${DATASET} --out ${OUT}
  RESULT_VARIABLE rc OUTPUT_VARIABLE log ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "sbgm-swiss-roll --dataset ${DATASET} failed (${rc}):\n${log}\n${err}")
endif()
file(READ ${OUT}/metrics.json metrics)
string(REGEX MATCH "\"sliced_wasserstein_ratio\": ([0-9.e+-]+)" _ "${metrics}")
set(ratio ${CMAKE_MATCH_1})
if(NOT ratio)
  message(FATAL_ERROR "metrics.json lacks sliced_wasserstein_ratio:\n${metrics}")
endif()
message(STATUS "${DATASET}: sliced Wasserstein ratio ${ratio} (bound ${BOUND})")
if(ratio GREATER ${BOUND})
  message(FATAL_ERROR "${DATASET}: ratio ${ratio} exceeds ${BOUND}\n${log}")
endif()
