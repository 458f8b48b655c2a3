# bench_generate: gpt2-124m decode tokens/s against the read-bandwidth bound measured in the same
# run, and time to first token against another tpar binary (argument 2), at TP=1 and TP=2 (it runs
# the tpar program built here).
add_executable(bench_generate ${CMAKE_CURRENT_LIST_DIR}/bench_generate.c)
target_link_libraries(bench_generate PRIVATE tpar)
target_compile_definitions(bench_generate PRIVATE TPAR_BIN="$<TARGET_FILE:tpar_cli>")
add_dependencies(bench_generate tpar_cli)
set_target_properties(bench_generate PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bench)
