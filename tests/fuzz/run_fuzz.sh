#!/bin/sh
# Runs the libFuzzer targets over their seed corpus.
# usage: run_fuzz.sh BIN_DIR CORPUS_DIR short|long SECONDS TARGET...
#   short: -runs=20000 per target, capped at SECONDS (make test)
#   long:  SECONDS per target, no run limit (on demand: the fuzz-long target)
# The committed corpus is read only: each run mutates into a scratch copy, so the repository
# stays as it is. A crash stops with the target's report; its input is left as crash-* in BIN_DIR.
bin=$1 corpus=$2 mode=$3 secs=$4
shift 4
scratch=$(mktemp -d /tmp/tpar_fuzz_run.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
fail=0
for t in "$@"; do
    mkdir -p "$scratch/$t"
    if [ "$mode" = short ]; then
        limits="-runs=20000 -max_total_time=$secs"
    else
        limits="-max_total_time=$secs"
    fi
    # -max_len: the seeds are tiny; larger inputs add time, not paths. rss limit: the readers must
    # never allocate from a length field before checking it against the file.
    if TPAR_FUZZ_TMP=$scratch "$bin/fuzz_$t" $limits -max_len=4096 -rss_limit_mb=512 -artifact_prefix="$bin/crash-$t-" \
        "$scratch/$t" "$corpus/$t" >"$scratch/$t.log" 2>&1; then
        echo "fuzz_$t: $(grep -Eo '(Done|DONE) [0-9]+ runs in [0-9]+ second' "$scratch/$t.log" | tail -1), no crash"
    else
        fail=1
        echo "FAIL: fuzz_$t found a crash:"
        tail -40 "$scratch/$t.log"
    fi
done
exit $fail
