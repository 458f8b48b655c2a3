# bench_vs_torch: tpar (TP=2) against the same GPT-2 in PyTorch (2 threads), side by side.
# A shell driver (bench/bench_vs_torch.sh) behind an executable wrapper in build/bench/, so that
# bench/run.sh finds it; PyTorch is optional (the benchmark says skipped without it).
find_program(TPAR_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
find_program(TPAR_PYTHON3 python3)
if(TPAR_PYTHON3)
  file(GENERATE OUTPUT ${PROJECT_BINARY_DIR}/bench/bench_vs_torch
       CONTENT "#!/bin/sh\nexec sh '${PROJECT_SOURCE_DIR}/bench/bench_vs_torch.sh' '$<TARGET_FILE:tpar_cli>' '${TPAR_PYTHON3}' '${PROJECT_SOURCE_DIR}' \"$@\"\n"
       FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
endif()
