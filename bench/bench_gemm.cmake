# bench_gemm: every GEMM provider (OpenBLAS, oneDNN) on GPT-2 small's training and decode shapes
# and a 2048^3 square, GFLOP/s, GB/s and the ratio over OpenBLAS side by side (the same code as
# `tpar bench gemm`); then fp32 vs bf16 GEMM rates and decode with fp32 / bf16 / int8 weights (issue #17).
add_executable(bench_gemm ${CMAKE_CURRENT_LIST_DIR}/bench_gemm.c
               ${PROJECT_SOURCE_DIR}/src/cli/bench_gemm.c ${PROJECT_SOURCE_DIR}/src/cli/util.c)
target_include_directories(bench_gemm PRIVATE ${PROJECT_SOURCE_DIR}/src/cli)
target_link_libraries(bench_gemm PRIVATE tpar)
set_target_properties(bench_gemm PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bench)
