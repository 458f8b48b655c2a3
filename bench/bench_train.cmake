# bench_train: gpt2-124m training-step tokens/s, MFU and per-rank memory at TP=1 vs TP=2
# (the ranks are the program itself under `tpar launch`).
add_executable(bench_train ${CMAKE_CURRENT_LIST_DIR}/bench_train.c)
target_link_libraries(bench_train PRIVATE tpar)
target_compile_definitions(bench_train PRIVATE TPAR_CLI="$<TARGET_FILE:tpar_cli>")
add_dependencies(bench_train tpar_cli)
set_target_properties(bench_train PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bench)
