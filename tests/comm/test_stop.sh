#!/bin/sh
# A rank frozen with SIGSTOP mid-collective, on a sub-communicator (as a trainer's TP group):
# the others time out naming it as stopped, the failure reaches the world (its next call fails
# at once), freeing does not wait for the stopped rank, and the job ends: under mpiexec through
# MPI_Abort (before the fix, rank 0 waited in MPI_Finalize for the stopped rank forever), under
# `tpar launch` through the launcher. Every run is bounded by `timeout`, so a hang is a failure,
# never a hung test; the stopped rank is continued and killed at the end whatever happened.
# usage: test_stop.sh TPAR TEST_FAIL [MPIEXEC]
tpar=$1
prog=$2
mpiexec=${3:-}
dir=$(mktemp -d)
out=$dir/out
pidfile=$dir/pid
cleanup() {
    p=$(cat "$pidfile" 2>/dev/null)
    [ -n "$p" ] && { kill -CONT "$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; }
    rm -rf "$dir"
}
trap cleanup EXIT

. "$(dirname "$0")/../expect.sh"
check() { check_file "$1" "$2" "$out"; }

# pid_alive PID: 0 if PID exists and is not a zombie
pid_alive() { st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) && [ "$st" != Z ] && [ "$st" != X ]; }

# run LABEL COMMAND...: the job, bounded; then the checks common to every launcher.
run() {
    label=$1
    shift
    rm -f "$pidfile"
    TPAR_COMM_TIMEOUT=2 timeout -k 5 60 "$@" >"$out" 2>&1
    rc=$?
    checks=$((checks + 1))
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] || [ "$rc" -eq 0 ]; then
        failed=$((failed + 1))
        echo "FAIL: $label: exit status $rc (124/137: the job hung and timeout ended it; 0: no failure seen)"
        sed 's/^/    /' "$out"
    fi
    check "$label: rank 0 names the stopped rank" \
        "^\[rank 0\] error: timeout: allreduce #[0-9]+ .* timed out after 2 s waiting for rank 1 \(world rank 1, pid [0-9]+\), which is stopped"
    check "$label: the world failed with it" "^\[rank 0\] world next call: timeout: barrier #[0-9]+: not started, another communicator of this rank failed first"
    check "$label: rank 0 freed its communicators" "^\[rank 0\] freed"
    p=$(cat "$pidfile" 2>/dev/null)
    checks=$((checks + 1))
    i=0
    while [ -n "$p" ] && pid_alive "$p" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    if [ -z "$p" ] || pid_alive "$p"; then
        failed=$((failed + 1))
        echo "FAIL: $label: the stopped rank (pid '$p') outlived the job"
        [ -n "$p" ] && { kill -CONT "$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; }
    fi
}

run "tpar launch" "$tpar" launch -n 2 --grace 0.5 -- "$prog" stop "$pidfile"
check "tpar launch: the launcher ends the stopped rank" "^tpar launch: rank 1 \(pid [0-9]+\) killed by signal (15|9)"

if [ -n "$mpiexec" ]; then
    for b in mpi hier shm; do
        run "mpiexec, TPAR_COMM=$b" "$mpiexec" --allow-run-as-root --oversubscribe -np 2 -x TPAR_COMM=$b \
            "$prog" stop "$pidfile"
        # MPI_Abort(..., 3): mpiexec exits 3 (its banner may be lost when mpiexec is short of resources)
        checks=$((checks + 1))
        if [ "$rc" -ne 3 ] && ! grep -q "MPI_ABORT was invoked on rank 0" "$out"; then
            failed=$((failed + 1))
            echo "FAIL: mpiexec, TPAR_COMM=$b: not ended through MPI_Abort (status $rc)"
        fi
    done
    # Stopped after the last collective, while the others finalize (MPI_Finalize has no
    # deadline, so tpar meets the ranks in a bounded barrier first, then aborts); and stopped
    # before a split (MPI's communicator constructors have none either: a bounded barrier first).
    for b in mpi hier; do
      for m in stopend stopsplit; do
        rm -f "$pidfile"
        TPAR_COMM_TIMEOUT=2 timeout -k 5 60 "$mpiexec" --allow-run-as-root --oversubscribe -np 2 -x TPAR_COMM=$b \
            "$prog" $m "$pidfile" >"$out" 2>&1
        rc=$?
        checks=$((checks + 1))
        if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] || [ "$rc" -eq 0 ]; then
            failed=$((failed + 1))
            echo "FAIL: $m, TPAR_COMM=$b: exit status $rc (124/137: hung inside MPI)"
            sed 's/^/    /' "$out"
        fi
        check "$m, TPAR_COMM=$b: rank 0 freed" "^\[rank 0\] freed"
        [ $m = stopsplit ] && check "$m, TPAR_COMM=$b: the split times out naming the stopped rank" \
            "^\[rank 0\] split: timeout: .*timed out after 2 s waiting for rank 1 \(world rank 1, pid [0-9]+\), which is stopped"
        p=$(cat "$pidfile" 2>/dev/null)
        i=0
        while [ -n "$p" ] && pid_alive "$p" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        checks=$((checks + 1))
        if [ -z "$p" ] || pid_alive "$p"; then
            failed=$((failed + 1))
            echo "FAIL: $m, TPAR_COMM=$b: the stopped rank (pid '$p') outlived the job"
            [ -n "$p" ] && { kill -CONT "$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; }
        fi
      done
    done
else
    echo "skipped: the mpiexec cases (no MPI in this build)"
fi
echo "test_stop: $checks checks, $failed failed"
[ "$failed" -eq 0 ]
