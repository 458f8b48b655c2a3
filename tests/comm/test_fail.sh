#!/bin/sh
# A rank that dies (kill -9) or stops answering mid-collective: every other rank fails with
# an error naming the collective, its sequence number and the missing rank; later calls fail
# at once (poisoned); the launcher reports it; no shared-memory entry is left in /dev/shm.
# With MPIEXEC, the same kill through the MPI backend: Open MPI itself ends the job when a
# rank dies, so the check is that the job ends (no hang), non-zero, naming the dead rank.
# usage: test_fail.sh TPAR TEST_FAIL [MPIEXEC]
tpar=$1
prog=$2
mpiexec=${3:-}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

. "$(dirname "$0")/../expect.sh"
check() { check_file "$1" "$2" "$out"; } # check DESCRIPTION REGEX: the saved output
shm_entries() { ls /dev/shm 2>/dev/null | grep -v -e '^vader' -e '^sm_segment' -e '^ompi' | sort; }

before=$(shm_entries)
for n in 2 4; do
    TPAR_COMM_TIMEOUT=30 "$tpar" launch -n $n --grace 2 -- "$prog" kill >"$out" 2>&1
    rc=$?
    checks=$((checks + 1))
    [ "$rc" -eq 137 ] || { failed=$((failed + 1)); echo "FAIL: kill, $n ranks: launcher status $rc, want 137"; }
    check "launcher reports the kill ($n ranks)" "^tpar launch: rank 1 \(pid [0-9]+\) killed by signal 9"
    check "rank 0 names the dead rank and the call ($n ranks)" \
        "^\[rank 0\] error: peer died: allreduce #[0-9]+ \(262144 x f32 sum\) on a $n-rank shm communicator: rank 1 \(world rank 1, pid [0-9]+\) died"
    check "poisoned afterwards ($n ranks)" "^\[rank 0\] next call: peer died"
    [ $n -eq 4 ] && check "every survivor reports (rank 3)" "^\[rank 3\] error: peer died: .*rank 1 "
done

TPAR_COMM_TIMEOUT=1 "$tpar" launch -n 3 --grace 0.5 -- "$prog" hang >"$out" 2>&1
rc=$?
checks=$((checks + 1))
[ "$rc" -ne 0 ] || { failed=$((failed + 1)); echo "FAIL: hang: launcher status 0"; }
check "timeout names the silent rank" \
    "^\[rank 0\] error: timeout: allreduce #[0-9]+ .* timed out after 1 s waiting for rank 1 "
check "rank 2 too" "^\[rank 2\] error: timeout: .*waiting for rank 1 "
check "launcher reports the survivors' failure" "^tpar launch: rank [02] \(pid [0-9]+\) exited with status 3"
check "launcher ends the silent rank" "^tpar launch: rank 1 \(pid [0-9]+\) killed by signal 15"

if [ -n "$mpiexec" ]; then
    TPAR_COMM_TIMEOUT=30 "$mpiexec" --allow-run-as-root --oversubscribe -np 3 -x TPAR_COMM=mpi "$prog" kill >"$out" 2>&1
    rc=$?
    checks=$((checks + 1))
    [ "$rc" -ne 0 ] || { failed=$((failed + 1)); echo "FAIL: kill under mpiexec: status 0"; }
    check "mpiexec reports the killed rank" "rank 1 with PID [0-9]+ on node .* exited on signal 9|\\[rank [02]\\] error: "
fi

after=$(shm_entries)
checks=$((checks + 1))
if [ "$before" != "$after" ]; then
    failed=$((failed + 1))
    echo "FAIL: /dev/shm changed: before '$before', after '$after'"
fi
echo "test_fail: $checks checks, $failed failed"
[ "$failed" -eq 0 ]
