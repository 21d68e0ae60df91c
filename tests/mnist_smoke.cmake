# Runs sbgm-mnist for a few steps on the MNIST fixture and checks that it
# succeeds and writes every output file. Called by ctest with -DEXE, -DDATA,
# -DCLASSIFIER, -DSAMPLE (sbgm-sample) and -DOUT.
file(REMOVE_RECURSE ${OUT})
execute_process(
  COMMAND ${EXE} --data ${DATA} --steps 5 --batch 8 --num-samples 4
    --sample-steps 5 --classifier ${CLASSIFIER}
    --likelihood --likelihood-images 2 --ode-tol 1e-2 --out ${OUT}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "sbgm-mnist failed with exit status ${rc}")
endif()
foreach(f samples.npy samples.png denoise.png loss.png loss.csv metrics.json checkpoint.pt
    model.safetensors)
  if(NOT EXISTS ${OUT}/${f})
    message(FATAL_ERROR "sbgm-mnist did not write ${OUT}/${f}")
  endif()
endforeach()
# 4 x 1 x 28 x 28 float32 after a 128-byte .npy header.
file(SIZE ${OUT}/samples.npy npy_size)
if(NOT npy_size EQUAL 12672)
  message(FATAL_ERROR "samples.npy has ${npy_size} bytes, expected 12672")
endif()
file(READ ${OUT}/metrics.json metrics)
foreach(key train_seconds final_loss frechet_samples_vs_test frechet_train_vs_test
        classifier_score_samples bits_per_dim)
  if(NOT metrics MATCHES "\"${key}\": [-0-9.e+]+")
    message(FATAL_ERROR "metrics.json lacks a number for ${key}:\n${metrics}")
  endif()
endforeach()
# sbgm-sample, from the saved U-Net, draws the same images (seed + 1, in
# batches of 3): the default recipe (VP, v-prediction) with its default
# sampler, then the DDPM schedule under Euler-Maruyama.
function(check_roundtrip dir)
  execute_process(
    COMMAND ${SAMPLE} ${dir}/model.safetensors ${ARGN} --num-samples 4
      --batch 3 --seed 1 --out ${dir}/sampled
    RESULT_VARIABLE rc OUTPUT_VARIABLE log ERROR_VARIABLE err)
  execute_process(
    COMMAND ${CMAKE_COMMAND} -E compare_files ${dir}/samples.npy ${dir}/sampled/samples.npy
    RESULT_VARIABLE same)
  if(NOT rc EQUAL 0 OR NOT same EQUAL 0)
    message(FATAL_ERROR "sbgm-sample ${ARGN} on ${dir}: status ${rc}, same ${same}:\n${log}\n${err}")
  endif()
endfunction()
check_roundtrip(${OUT} --sampler dpmpp_2m_sde --grid logsnr --steps 5)
# A wrong flag combination must fail with a message, not crash.
# Any sampler runs any mode: Euler-Maruyama on the DDPM schedule.
execute_process(
  COMMAND ${EXE} --data ${DATA} --mode ddpm --sampler em --steps 3 --batch 8
    --num-samples 4 --sample-steps 5 --out ${OUT}/ddpm-em
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT EXISTS ${OUT}/ddpm-em/samples.npy)
  message(FATAL_ERROR "--mode ddpm --sampler em failed with status ${rc}")
endif()
check_roundtrip(${OUT}/ddpm-em --sampler em --grid logsnr --steps 5)
# An unknown sampler is refused with a message that names it.
execute_process(
  COMMAND ${EXE} --data ${DATA} --sampler euler_z --out ${OUT}/bad
  RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_VARIABLE out)
if(rc EQUAL 0 OR NOT "${err}${out}" MATCHES "euler_z")
  message(FATAL_ERROR "--sampler euler_z: status ${rc}, output: ${err}${out}")
endif()
