# bench_tokenize: tokenizer throughput (MB/s) on tinyshakespeare, tpar's byte-level BPE against the
# npm tokenizer js-tiktoken (node, installed into a temporary directory) in the same run.
add_executable(bench_tokenize ${CMAKE_CURRENT_LIST_DIR}/bench_tokenize.c)
target_link_libraries(bench_tokenize PRIVATE tpar)
target_compile_definitions(bench_tokenize PRIVATE TPAR_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
set_target_properties(bench_tokenize PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bench)
