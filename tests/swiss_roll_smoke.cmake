# Runs sbgm-swiss-roll briefly with a discrete and a continuous sampler and
# checks that it succeeds, writes every output file with the right .npy size,
# and that metrics.json holds the distances. Called by ctest with -DEXE, -DOUT.
foreach(sampler ddpm em)
  set(out ${OUT}/${sampler})
  file(REMOVE_RECURSE ${out})
  execute_process(
    COMMAND ${EXE} --steps 200 --batch 64 --timesteps 50 --num-samples 300
      --sample-steps 20 --sampler ${sampler} --out ${out}
    RESULT_VARIABLE rc OUTPUT_VARIABLE log ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "sbgm-swiss-roll --sampler ${sampler} failed (${rc}):\n${log}\n${err}")
  endif()
  foreach(f samples.npy samples.png forward.png reverse.gif loss.png metrics.json checkpoint.pt)
    if(NOT EXISTS ${out}/${f})
      message(FATAL_ERROR "sbgm-swiss-roll did not write ${out}/${f}")
    endif()
  endforeach()
  # 300 x 2 float32 after a 128-byte .npy header.
  file(SIZE ${out}/samples.npy npy_size)
  if(NOT npy_size EQUAL 2528)
    message(FATAL_ERROR "samples.npy has ${npy_size} bytes, expected 2528")
  endif()
  file(READ ${out}/metrics.json metrics)
  foreach(key sliced_wasserstein sliced_wasserstein_floor mmd mmd_floor train_seconds)
    if(NOT metrics MATCHES "\"${key}\": [-0-9.e+]+")
      message(FATAL_ERROR "metrics.json lacks a number for ${key}:\n${metrics}")
    endif()
  endforeach()
  if(NOT metrics MATCHES "\"samples_finite\": true")
    message(FATAL_ERROR "non-finite samples:\n${metrics}")
  endif()
endforeach()
# A bad flag is refused with a message.
execute_process(COMMAND ${EXE} --sampler nope --out ${OUT}/bad
  RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_VARIABLE out)
if(rc EQUAL 0 OR NOT "${err}${out}" MATCHES "nope")
  message(FATAL_ERROR "--sampler nope: status ${rc}, output: ${err}${out}")
endif()
