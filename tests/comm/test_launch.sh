#!/bin/sh
# `tpar launch`: environment of the ranks, exit statuses and signals reported as specified,
# SIGTERM then SIGKILL escalation, signal forwarding, usage errors.
# usage: test_launch.sh TPAR
tpar=$1
checks=0
failed=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# expect RC REGEX -- command...: exit status and a line of stdout+stderr matching REGEX
expect() {
    want=$1 re=$2
    shift 3
    "$@" >"$out" 2>&1
    rc=$?
    checks=$((checks + 1))
    if [ "$rc" -ne "$want" ] || ! grep -Eq -- "$re" "$out"; then
        failed=$((failed + 1))
        echo "FAIL: $* -> status $rc (want $want), output should match '$re':"
        sed 's/^/    /' "$out"
    fi
}

expect 0 "^r=0 w=3 lr=0 ls=3$" -- "$tpar" launch -n 3 -- sh -c 'echo "r=$TPAR_RANK w=$TPAR_WORLD_SIZE lr=$TPAR_LOCAL_RANK ls=$TPAR_LOCAL_SIZE"'
expect 0 "^r=2 w=3 lr=2 ls=3$" -- "$tpar" launch -n 3 -- sh -c 'echo "r=$TPAR_RANK w=$TPAR_WORLD_SIZE lr=$TPAR_LOCAL_RANK ls=$TPAR_LOCAL_SIZE"'
expect 0 "^ok$" -- "$tpar" launch -n 1 sh -c 'echo ok'
# a rank that exits non-zero: reported, the others ended (SIGTERM), its status returned
expect 3 "^tpar launch: rank 1 \(pid [0-9]+\) exited with status 3$" -- \
    "$tpar" launch -n 3 --grace 0.2 -- sh -c '[ "$TPAR_RANK" = 1 ] && exit 3; exec sleep 30'
expect 3 "^tpar launch: rank 0 \(pid [0-9]+\) killed by signal 15" -- \
    "$tpar" launch -n 3 --grace 0.2 -- sh -c '[ "$TPAR_RANK" = 1 ] && exit 3; exec sleep 30'
# a rank killed by a signal: 128 + signal
expect 137 "^tpar launch: rank 2 \(pid [0-9]+\) killed by signal 9" -- \
    "$tpar" launch -n 3 --grace 0.2 -- sh -c '[ "$TPAR_RANK" = 2 ] && kill -9 $$; exec sleep 30'
# ranks that ignore SIGTERM get SIGKILL after the grace period
expect 4 "^tpar launch: rank 0 \(pid [0-9]+\) killed by signal 9" -- \
    "$tpar" launch -n 2 --grace 0.2 -- sh -c 'trap "" TERM; [ "$TPAR_RANK" = 1 ] && exit 4; exec sleep 30'
# usage errors and a program that cannot run
expect 2 "-n N is required" -- "$tpar" launch -- true
expect 2 "no program to launch" -- "$tpar" launch -n 2
expect 2 "-n expects an integer in \[1, 4096\], got '0'" -- "$tpar" launch -n 0 true
expect 127 "cannot run '/nonexistent/prog'" -- "$tpar" launch -n 2 /nonexistent/prog

# `tpar bench`: a dispatcher; `bench comm` launches itself and prints its table or JSON
# (sizes of all-gather / reduce-scatter are rounded down to a multiple of the rank count)
expect 2 "usage: tpar bench <what>" -- "$tpar" bench
expect 0 "usage: tpar bench layers" -- "$tpar" bench layers --help
expect 2 "unknown option '--bogus'" -- "$tpar" bench layers --bogus
expect 2 "the training benchmark is the program bench_train" -- "$tpar" bench train
expect 2 "unknown benchmark 'frob'" -- "$tpar" bench frob
expect 2 "--op expects allreduce, allgather, reduce_scatter or broadcast, got 'x'" -- "$tpar" bench comm --op x
expect 0 '^\{"op":"allreduce","backend":"shm","ranks":2,"bytes":64,"time_us":[0-9.]+,"algbw_gbs":[0-9.]+,"busbw_gbs":[0-9.]+,"buffers":"shared"\}$' -- \
    "$tpar" bench comm -n 2 --max-bytes 64 --json
expect 0 "^ +1020 +255 +[0-9.]+ +[0-9.]+ +[0-9.]+$" -- "$tpar" bench comm --op reduce_scatter -n 3 --min-bytes 1024 --max-bytes 1024
expect 0 "# tpar bench comm: broadcast, float32, backend shm, 1 ranks" -- "$tpar" bench comm --op broadcast -n 1 --max-bytes 64

# SIGTERM to the launcher reaches every rank
"$tpar" launch -n 2 -- sh -c 'trap "echo got TERM $TPAR_RANK; exit 5" TERM; while :; do sleep 0.05; done' >"$out" 2>&1 &
lpid=$!
sleep 1
kill -TERM "$lpid"
wait "$lpid"
rc=$?
checks=$((checks + 1))
if [ "$rc" -eq 0 ] || ! grep -q "got TERM 0" "$out" || ! grep -q "got TERM 1" "$out"; then
    failed=$((failed + 1))
    echo "FAIL: SIGTERM forwarding (status $rc):"
    sed 's/^/    /' "$out"
fi

echo "test_launch: $checks checks, $failed failed"
[ "$failed" -eq 0 ]
