# bench_layers: forward + backward time of the tensor-parallel attention, MLP and block at
# GPT-2 small shapes, TP = 1 and 2, SP off and on; communication and GEMM shares; the block's
# TP speedup measured side by side (the same code as `tpar bench layers`).
add_executable(bench_layers ${CMAKE_CURRENT_LIST_DIR}/bench_layers.c
               ${PROJECT_SOURCE_DIR}/src/cli/bench_layers.c ${PROJECT_SOURCE_DIR}/src/cli/util.c)
target_include_directories(bench_layers PRIVATE ${PROJECT_SOURCE_DIR}/src/cli)
target_compile_definitions(bench_layers PRIVATE TPAR_CLI_PATH="$<TARGET_FILE:tpar_cli>")
target_link_libraries(bench_layers PRIVATE tpar)
add_dependencies(bench_layers tpar_cli)
set_target_properties(bench_layers PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bench)
