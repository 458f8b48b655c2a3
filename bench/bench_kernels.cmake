# bench_kernels: per-kernel times at GPT-2 small shapes, our GEMM vs raw cblas_sgemm, and the
# non-GEMM share of a transformer-block-like forward + backward.
add_executable(bench_kernels ${CMAKE_CURRENT_LIST_DIR}/bench_kernels.c)
target_link_libraries(bench_kernels PRIVATE tpar)
set_target_properties(bench_kernels PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bench)
