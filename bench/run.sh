#!/bin/sh
# Runs every benchmark in turn. usage: bench/run.sh BUILD_DIR
# Benchmarks print their own tables and side-by-side ratios; nothing here asserts on time.
set -eu
build=${1:-build}
ran=0
for b in $(ls "$build"/bench/bench_* 2>/dev/null); do
    [ -x "$b" ] || continue
    echo "== $(basename "$b")"
    "$b"
    ran=$((ran + 1))
done
[ "$ran" -gt 0 ] || echo "no benchmarks built yet"
