# bench_plan: `tpar plan`'s step time and communication share against `tpar train` here.
# A Python driver (bench/bench_plan.py) behind an executable wrapper in build/bench/, so that
# bench/run.sh finds it.
find_program(TPAR_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
find_program(TPAR_PYTHON3 python3)
if(TPAR_PYTHON3)
  file(GENERATE OUTPUT ${PROJECT_BINARY_DIR}/bench/bench_plan
       CONTENT "#!/bin/sh\nexec '${TPAR_PYTHON3}' '${PROJECT_SOURCE_DIR}/bench/bench_plan.py' '$<TARGET_FILE:tpar_cli>' '${PROJECT_SOURCE_DIR}/data/tinyshakespeare.txt' \"$@\"\n"
       FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
endif()
