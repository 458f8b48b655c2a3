#!/bin/sh
# tpar across namespaced hosts (scripts/hosts.sh): 2 hosts x 2 ranks, Open MPI over TCP only
# (btl tcp,self) on a private subnet inside the namespaces. One mode per CTest test:
#   layout       the test bed: 2 hostnames, 2 ranks each, only lo + the private address per host
#   collectives BACKEND   tests/comm/test_collectives through mpi or hier across the hosts
#   kill BACKEND a rank on the second host killed with SIGKILL ends the job, named, within the bound
#   train        tpar train --tp 2 --dp 2 across 2 hosts vs 1 host: bit-identical (see below);
#                tpar generate (greedy) across hosts vs 1 host: the same text; a TP group
#                across hosts refused by tpar train, and accepted with --allow-tp-across-hosts
# Every mode checks that no namespace of the test bed is left afterwards.
# usage: test_hosts.sh MODE [BACKEND] TPAR TEST_COLLECTIVES TEST_FAIL DATA
set -u
mode=$1
shift
backend=""
case $mode in collectives | kill) backend=$1; shift ;; esac
tpar=$1 collectives=$2 fail=$3 data=$4
src=$(cd "$(dirname "$0")/../.." && pwd)
hosts="$src/scripts/hosts.sh"
. "$src/tests/expect.sh"
out=$(mktemp)
work=$(mktemp -d)
trap 'rm -rf "$out" "$work"' EXIT
check() { check_file "$1" "$2" "$out"; }

if ! reason=$("$hosts" check); then
    echo "$reason" # "skipped: ..."
    exit 0
fi
if ! command -v mpirun >/dev/null 2>&1; then
    echo "skipped: no mpirun (Open MPI)"
    exit 0
fi
mpirun="mpirun --allow-run-as-root --oversubscribe"
# every bound is a `timeout`: a hang fails the test instead of holding CTest until its limit
"$hosts" cleanup >/dev/null 2>&1 # what killed runs left (dead pids only), so before/after compare ours
before=$("$hosts" list)

# bed CMD: runs CMD (a shell command line) in host 0 of a fresh 2-host test bed; output in $out
bed() { timeout 150 "$hosts" run -n 2 --slots 2 -- sh -c "$1" >"$out" 2>&1; }

case $mode in
layout)
    bed "$mpirun -np 4 sh -c 'echo \"rank \$OMPI_COMM_WORLD_RANK on \$(hostname) addrs \$(ip -o -4 addr show | awk \"{print \\\$4}\" | tr \"\\n\" \" \")\"'"
    rc=$?
    checks=$((checks + 1))
    [ $rc -eq 0 ] || { failed=$((failed + 1)); echo "FAIL: layout: status $rc"; cat "$out"; }
    # by slot: ranks 0-1 on the first host, 2-3 on the second; each host sees only loopback and
    # its own address on the private subnet (no other interface: traffic cannot leave)
    check "rank 0 on host 0" "^rank 0 on tparh[0-9]+-h0 addrs 127.0.0.1/8 10.77.0.1/24 $"
    check "rank 1 on host 0" "^rank 1 on tparh[0-9]+-h0 addrs 127.0.0.1/8 10.77.0.1/24 $"
    check "rank 2 on host 1" "^rank 2 on tparh[0-9]+-h1 addrs 127.0.0.1/8 10.77.0.2/24 $"
    check "rank 3 on host 1" "^rank 3 on tparh[0-9]+-h1 addrs 127.0.0.1/8 10.77.0.2/24 $"
    # shaping: the links of a --rate run carry a tbf qdisc
    timeout 60 "$hosts" run -n 2 --rate 1gbit -- tc qdisc show dev eth0 >"$out" 2>&1
    check "tbf on the link" "qdisc tbf .* rate 1Gbit"
    # a host that is not in the test bed: the agent says so and mpirun gives up
    bed "timeout 60 $mpirun --host tparh1-h7 -np 1 true"
    rc=$?
    checks=$((checks + 1))
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || { failed=$((failed + 1)); echo "FAIL: unknown host: status $rc"; cat "$out"; }
    check "unknown host named" "nsexec-agent: no namespace 'tparh1-h7'"
    # cleanup removes the namespaces of a run whose process is gone (here: one made by hand
    # under the pid of a process that has exited), and keeps those of live runs
    (exit 0) &
    dead=$!
    wait
    ip netns add "tparh$dead-h0" && ip netns add "tparh$dead-br"
    ip netns add "tparh$$-h0"
    "$hosts" cleanup >"$out" 2>&1
    check "cleanup removes the stale run" "removed tparh$dead "
    check "cleanup keeps a live run" "tparh$$ belongs to live process $$; kept"
    checks=$((checks + 1))
    left=$("$hosts" list | grep -c -e "^tparh$dead-")
    [ "$left" -eq 0 ] || { failed=$((failed + 1)); echo "FAIL: cleanup left $left namespaces of tparh$dead"; }
    ip netns del "tparh$$-h0"
    expect 2 "--rate expects e.g. 1gbit" -- "$hosts" run --rate fast -- true
    expect 2 "no command after --" -- "$hosts" run -n 2
    ;;
collectives)
    # TPAR_COMM_HIER_HOST_SIZE unset: hier groups ranks by Open MPI's node (MPI_COMM_TYPE_SHARED),
    # i.e. the 2 namespaced hosts: shm inside a host, MPI over TCP between them
    bed "TPAR_COMM=$backend $mpirun -np 4 -x TPAR_COMM $collectives"
    rc=$?
    checks=$((checks + 1))
    [ $rc -eq 0 ] || { failed=$((failed + 1)); echo "FAIL: test_collectives ($backend) across hosts: status $rc"; cat "$out"; }
    for r in 0 1 2 3; do check "rank $r passed" "^\[rank $r\] test_collectives: [0-9]+ checks, 0 failed"; done
    ;;
kill)
    # --map-by node: rank 1 runs on the second host; test_fail's rank 1 kills itself mid all-reduce
    bed "TPAR_COMM=$backend TPAR_COMM_TIMEOUT=30 timeout 90 $mpirun --map-by node -np 4 -x TPAR_COMM -x TPAR_COMM_TIMEOUT $fail kill"
    rc=$?
    checks=$((checks + 1))
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || { failed=$((failed + 1)); echo "FAIL: kill ($backend): status $rc (0: not noticed, 124: hung)"; cat "$out"; }
    check "mpirun names the killed rank and its host" "process rank 1 with PID [0-9]+ on node tparh[0-9]+-h1 exited on signal 9"
    ;;
train)
    # Reference: 1 host (tpar launch, shm). Then 2 hosts x 2 ranks under mpirun (auto = hier: TP
    # inside a host over shm, DP across over TCP). Every reduction here has 2 operands (TP=2, DP=2)
    # and a + b == b + a exactly in float arithmetic, so no summation order can differ: the
    # losses, gradient norms and saved weights must be bit-identical, not just close.
    args="train --data $data --model tiny --tp 2 --dp 2 --batch 4 --seq 32 --steps 6 --val-every 0 --val-batches 2 --log-every 3"
    timeout 120 $tpar $args --metrics "$work/one.jsonl" --save-dir "$work/one" >"$out" 2>&1
    rc=$?
    checks=$((checks + 1))
    [ $rc -eq 0 ] || { failed=$((failed + 1)); echo "FAIL: train on 1 host: status $rc"; cat "$out"; }
    check "1 host: placement printed" "^placement: 1 host \| TP group 0 \(ranks 0-1\) on .* \| TP group 1 \(ranks 2-3\) on "
    bed "$mpirun -np 4 $tpar $args --metrics $work/two.jsonl --save-dir $work/two"
    rc=$?
    checks=$((checks + 1))
    [ $rc -eq 0 ] || { failed=$((failed + 1)); echo "FAIL: train on 2 hosts: status $rc"; cat "$out"; }
    check "2 hosts: TP groups inside hosts" \
        "^placement: 2 hosts \| TP group 0 \(ranks 0-1\) on tparh[0-9]+-h0 \| TP group 1 \(ranks 2-3\) on tparh[0-9]+-h1 \| DP crosses hosts, TP stays inside each host$"
    checks=$((checks + 1))
    l1=$(grep -o '"loss": \{0,1\}[^,}]*' "$work/one.jsonl" 2>/dev/null)
    l2=$(grep -o '"loss": \{0,1\}[^,}]*' "$work/two.jsonl" 2>/dev/null)
    n1=$(grep -o '"grad_norm": \{0,1\}[^,}]*' "$work/one.jsonl" 2>/dev/null)
    n2=$(grep -o '"grad_norm": \{0,1\}[^,}]*' "$work/two.jsonl" 2>/dev/null)
    if [ -z "$l1" ] || [ "$l1" != "$l2" ] || [ "$n1" != "$n2" ]; then
        failed=$((failed + 1))
        echo "FAIL: losses / gradient norms differ between 1 and 2 hosts:"
        echo "1 host: $l1 $n1"
        echo "2 hosts: $l2 $n2"
    fi
    for f in model.safetensors optim.safetensors; do
        checks=$((checks + 1))
        a=$(ls "$work"/one/step_*6/$f 2>/dev/null) b=$(ls "$work"/two/step_*6/$f 2>/dev/null)
        if [ -z "$a" ] || [ -z "$b" ] || ! cmp -s "$a" "$b"; then
            failed=$((failed + 1))
            echo "FAIL: $f after 6 steps differs between 1 and 2 hosts (or is missing): '$a' '$b'"
        fi
    done
    # tpar generate on the 2-host checkpoint, greedy: TP=4 on 2 hosts x 2 ranks and TP=2 with its
    # two ranks on different hosts, against the same TP on 1 host. TP=2 sums two operands (exact
    # in any order); TP=4's sums may round differently over MPI than over shm, so its logits agree
    # within rounding and greedy text is compared (a near-tie could flip it; none in this model).
    gen="generate --ckpt $work/two --prompt ROMEO: --tokens 40 --temperature 0"
    for tp in 2 4; do
        timeout 60 $tpar $gen --tp $tp >"$work/gen1_$tp.txt" 2>"$out" || { checks=$((checks + 1)); failed=$((failed + 1)); echo "FAIL: generate --tp $tp on 1 host"; cat "$out"; }
    done
    bed "$mpirun --map-by node -np 2 $tpar $gen --tp 2 >$work/gen2_2.txt && $mpirun -np 4 $tpar $gen --tp 4 >$work/gen2_4.txt"
    rc=$?
    checks=$((checks + 1))
    [ $rc -eq 0 ] || { failed=$((failed + 1)); echo "FAIL: generate on 2 hosts: status $rc"; cat "$out"; }
    for tp in 2 4; do
        checks=$((checks + 1))
        if [ ! -s "$work/gen1_$tp.txt" ] || ! cmp -s "$work/gen1_$tp.txt" "$work/gen2_$tp.txt"; then
            failed=$((failed + 1))
            echo "FAIL: generate --tp $tp: 1 host and 2 hosts differ:"
            cat "$work/gen1_$tp.txt" "$work/gen2_$tp.txt" 2>&1
        fi
    done
    # --map-by node puts ranks 0 and 1 (one TP group) on different hosts: refused before any step
    bed "$mpirun --map-by node -np 4 $tpar $args; echo status=\$?; $mpirun --map-by node -np 4 $tpar $args --allow-tp-across-hosts"
    rc=$?
    check "a TP group across hosts is refused" \
        "error: placement: TP group 0 \(ranks 0-1\) spans hosts: rank 0 is on tparh[0-9]+-h0, rank 1 on tparh[0-9]+-h1; .*--allow-tp-across-hosts"
    check "refused with status 2" "^status=2$"
    checks=$((checks + 1))
    [ $rc -eq 0 ] || { failed=$((failed + 1)); echo "FAIL: --allow-tp-across-hosts: status $rc"; cat "$out"; }
    check "forced: the banner says so" "TP group 0 \(ranks 0-1\) on tparh[0-9]+-h0 and other hosts"
    check "forced: it trains" "^done: 6 steps"
    ;;
*)
    echo "usage: test_hosts.sh layout|collectives BACKEND|kill BACKEND|train TPAR TEST_COLLECTIVES TEST_FAIL DATA" >&2
    exit 2
    ;;
esac

after=$("$hosts" list)
checks=$((checks + 1))
if [ "$before" != "$after" ]; then
    failed=$((failed + 1))
    echo "FAIL: test-bed namespaces left behind: before '$before', after '$after'"
fi
echo "test_hosts $mode $backend: $checks checks, $failed failed"
[ "$failed" -eq 0 ]
