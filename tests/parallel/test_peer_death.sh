#!/bin/sh
# A rank killed between a transformer block's forward and backward: every other rank's
# backward fails at once with a message naming the layer, the collective and the dead rank.
# usage: test_peer_death.sh TPAR TEST_PARALLEL_LAYERS
tpar=$1
prog=$2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
. "$(dirname "$0")/../expect.sh"
check() { check_file "$1" "$2" "$out"; } # check DESCRIPTION REGEX: the saved output
for n in 2 4; do
    TPAR_COMM_TIMEOUT=30 "$tpar" launch -n $n --grace 2 -- "$prog" die >"$out" 2>&1
    rc=$?
    checks=$((checks + 1))
    [ "$rc" -eq 137 ] || { failed=$((failed + 1)); echo "FAIL: $n ranks: launcher status $rc, want 137"; }
    last=$((n - 1))
    check "rank 0 names the layer, the collective and the dead rank ($n ranks)" \
        "^\[rank 0\] block backward: peer died: column-parallel linear backward: .*rank $last .*died"
    [ $n -eq 4 ] && check "every survivor reports (rank 2)" "^\[rank 2\] block backward: peer died: .*rank 3 "
done
echo "test_peer_death: $checks checks, $failed failed"
[ "$failed" -eq 0 ]
