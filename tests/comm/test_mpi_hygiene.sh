#!/bin/sh
# What an MPI run leaves and opens (docs/FAULTS.md, "Under mpirun"):
# 1. stale Open MPI segments (/dev/shm/vader_segment.*, left by kill -9 of mpirun) are removed by
#    the next tpar run: an old one that no process holds goes; a fresh one (a job starting now)
#    and an old one some process holds open stay; a segment is never taken from a live job.
# 2. with MPIEXEC: the ranks of `tpar bench comm --backend mpi` (tpar's own mpiexec path) listen
#    on no TCP port outside loopback (checked with ss when present).
# usage: test_mpi_hygiene.sh TPAR [MPIEXEC]
tpar=$1
mpiexec=${2:-}
. "$(dirname "$0")/../expect.sh"
tag="tpartest$$"
old=/dev/shm/vader_segment.$tag.dead.0
fresh=/dev/shm/vader_segment.$tag.fresh.0
held=/dev/shm/vader_segment.$tag.held.0
holder=
cleanup() {
    [ -n "$holder" ] && kill "$holder" 2>/dev/null
    rm -f "$old" "$fresh" "$held"
}
trap cleanup EXIT

if [ -w /dev/shm ]; then
    (umask 077 && : >"$old" && : >"$fresh" && : >"$held") # 0600, as Open MPI makes them
    touch -d '-1 minute' "$old" "$held"
    sh -c 'exec 3<"$1"; exec sleep 60' sh "$held" &
    holder=$!
    sleep 0.3
    # (info --help: the sweep runs before any subcommand; help returns at once, so the check that
    # follows sees the files as they were left by this run alone)
    expect 0 "removed [0-9]+ stale Open MPI shared-memory segment" -- "$tpar" info --help
    checks=$((checks + 3))
    [ ! -e "$old" ] || { failed=$((failed + 1)); echo "FAIL: an old segment that no process holds was kept"; }
    [ -e "$fresh" ] || { failed=$((failed + 1)); echo "FAIL: a fresh segment (a job starting now) was removed"; }
    [ -e "$held" ] || { failed=$((failed + 1)); echo "FAIL: a segment held open by a live process was removed"; }
else
    echo "skipped: the segment sweep (/dev/shm not writable)"
fi

if [ -n "$mpiexec" ] && command -v ss >/dev/null 2>&1; then
    out=$(mktemp)
    timeout -k 5 120 "$tpar" bench comm -n 2 --backend mpi --min-bytes 16777216 --max-bytes 67108864 >"$out" 2>&1 &
    job=$!
    i=0 # until the ranks are past MPI_Init (the table's header is printed after it)
    while ! grep -q "bytes" "$out" && kill -0 $job 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
    ranks=$(pgrep -f "tpar bench comm -n 2 --backend mpi" | grep -v "^$job\$")
    listen=$(ss -ltnpH 2>/dev/null | grep -E '"tpar",pid=' | grep -vE ' (127\.[0-9.]+|\[::1\]):[0-9]+ ')
    checks=$((checks + 1))
    if [ -n "$listen" ]; then
        failed=$((failed + 1))
        echo "FAIL: a rank listens outside loopback:"
        echo "$listen" | sed 's/^/    /'
    fi
    wait $job
    rc=$?
    checks=$((checks + 1))
    [ "$rc" -eq 0 ] || { failed=$((failed + 1)); echo "FAIL: tpar bench comm --backend mpi exited $rc"; sed 's/^/    /' "$out"; }
    rm -f "$out"
else
    echo "skipped: the listening check (no MPI in this build, or no ss)"
fi
echo "test_mpi_hygiene: $checks checks, $failed failed"
[ "$failed" -eq 0 ]
