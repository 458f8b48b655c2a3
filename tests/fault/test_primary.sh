#!/bin/sh
# The supervisor names the rank with the root cause, not the first rank to end: a rank that
# only saw another's failure ("another rank failed", a dead peer, a timeout waiting for a rank)
# is a secondary failure (docs/FAULTS.md). Stand-in ranks (fault_rank) leave the messages a real
# rank would, with the echoing rank ending first. Also: an error line of `tpar` is one write(2)
# (checked with strace when it can trace), so lines of ranks sharing stderr never interleave.
# usage: test_primary.sh TPAR FAULT_RANK
tpar=$1
prog=$2
. "$(dirname "$0")/../expect.sh"

# diskfull: a long grace, so that rank 0 (failing 0.2 s after rank 1) ends on its own
export TPAR_LAUNCH_GRACE=5
expect 1 "giving up after 0 restarts \(--max-restarts 0\): rank 0 exited with status 1 while saving the checkpoint of step 3" \
    -- timeout -k 5 60 "$tpar" launch -n 2 --max-restarts 0 -- "$prog" diskfull
expect 1 "rank 1 was the first to end, a consequence of rank 0's failure" \
    -- timeout -k 5 60 "$tpar" launch -n 2 --max-restarts 0 -- "$prog" diskfull
export TPAR_LAUNCH_GRACE=0.5
expect 1 "attempt 1 failed: rank 1 did not answer at step 3; rank 0 timed out waiting for it, then the launcher ended it \(killed by signal 15 \(SIGTERM\)\)" \
    -- timeout -k 5 60 "$tpar" launch -n 2 --max-restarts 0 -- "$prog" stall
expect 137 "attempt 1 failed: rank 1 killed by signal 9 \(SIGKILL\) at step 3" \
    -- timeout -k 5 60 "$tpar" launch -n 2 --max-restarts 0 -- "$prog" kill

# One write(2) per error line: before, "tpar CMD: error: ", the message and "\n" were three.
log=$(mktemp)
strace -f -s 4096 -e trace=write -o "$log" "$tpar" train --tp 0 >/dev/null 2>&1
if grep -q 'write(2' "$log" 2>/dev/null; then
    checks=$((checks + 1))
    if ! grep -Eq 'write\(2, "tpar train: error: --tp expects an integer in \[1, 4096\], got '\''0'\''\\n", [0-9]+\)' "$log"; then
        failed=$((failed + 1))
        echo "FAIL: the error line is not written whole in one write(2):"
        grep 'write(2' "$log" | sed 's/^/    /'
    fi
else
    echo "skipped: the one-write check (strace cannot trace here)"
fi
rm -f "$log"
echo "test_primary: $checks checks, $failed failed"
[ "$failed" -eq 0 ]
