# sbgm-mnist under torchrun, as the README launches it (2 processes, the
# static rendezvous with the agent's store; -r 2 -t 2 for Debian 12's
# torchrun 1.13 on Python 3.11), on a free port: it trains, rank 0 writes
# every file; then a resume to more steps continues from the checkpoint on
# both ranks. Called by ctest with -DTORCHRUN, -DPYTHON, -DEXE, -DDATA, -DOUT.
file(REMOVE_RECURSE ${OUT})
execute_process(
  COMMAND ${PYTHON} -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
  OUTPUT_VARIABLE port OUTPUT_STRIP_TRAILING_WHITESPACE)
set(launch ${TORCHRUN} --nproc_per_node=2 -r 2 -t 2 --master_port=${port}
  --no_python ${EXE} --data ${DATA} --batch 8 --num-samples 4 --sample-steps 5
  --dist-timeout 60 --out ${OUT})
execute_process(COMMAND ${launch} --steps 6 RESULT_VARIABLE rc
  OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "torchrun sbgm-mnist failed (${rc}):\n${out}\n${err}")
endif()
if(NOT out MATCHES "data-parallel: 2 processes \\(torchrun, gloo\\)")
  message(FATAL_ERROR "sbgm-mnist did not run data-parallel:\n${out}")
endif()
foreach(f samples.npy samples.png loss.csv metrics.json checkpoint.pt model.safetensors)
  if(NOT EXISTS ${OUT}/${f})
    message(FATAL_ERROR "sbgm-mnist under torchrun did not write ${OUT}/${f}")
  endif()
endforeach()
execute_process(COMMAND ${launch} --steps 10 --resume RESULT_VARIABLE rc
  OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "torchrun sbgm-mnist --resume failed (${rc}):\n${out}\n${err}")
endif()
if(NOT out MATCHES "trained to step 10")
  message(FATAL_ERROR "the resumed run did not reach step 10:\n${out}")
endif()
file(STRINGS ${OUT}/loss.csv rows)
list(GET rows -1 last)
if(NOT last MATCHES "^10,")
  message(FATAL_ERROR "loss.csv ends with '${last}', not step 10")
endif()
