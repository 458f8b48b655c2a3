# bench_generate: `tpar generate` time to first token and decode tokens/s, TP=1 vs TP=2, for the
# tiny preset and gpt2-124m shapes with random weights (it runs the tpar program built here).
add_executable(bench_generate ${CMAKE_CURRENT_LIST_DIR}/bench_generate.c)
target_compile_definitions(bench_generate PRIVATE TPAR_BIN="$<TARGET_FILE:tpar_cli>")
add_dependencies(bench_generate tpar_cli)
set_target_properties(bench_generate PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bench)
