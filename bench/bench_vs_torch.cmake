# bench_vs_torch: tpar (TP=2) against the same GPT-2 in PyTorch (2 threads), side by side,
# driven by bench/bench_vs_torch.sh; PyTorch is optional (the benchmark says skipped without it).
tpar_bench_script(bench_vs_torch "sh '${PROJECT_SOURCE_DIR}/bench/bench_vs_torch.sh' '$<TARGET_FILE:tpar_cli>' '${TPAR_PYTHON3}' '${PROJECT_SOURCE_DIR}'")
