# bench_kernels: per-kernel times at GPT-2 small shapes, the kernels against their previous
# (pre-vectorisation, single-threaded) versions side by side, our GEMM vs raw cblas_sgemm,
# and the non-GEMM share of a transformer-block-like forward + backward.
add_executable(bench_kernels ${CMAKE_CURRENT_LIST_DIR}/bench_kernels.c ${CMAKE_CURRENT_LIST_DIR}/bench_kernels_prev.c)
target_link_libraries(bench_kernels PRIVATE tpar)
# the previous kernels were compiled with -fno-math-errno (src/kernels/CMakeLists.txt)
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/bench_kernels_prev.c PROPERTIES COMPILE_OPTIONS "-fno-math-errno")
set_target_properties(bench_kernels PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bench)
