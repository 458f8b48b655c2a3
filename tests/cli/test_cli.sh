#!/bin/sh
# The tpar program's front door: help, version, unknown commands and options.
# usage: test_cli.sh PATH_TO_TPAR
tpar=$1
checks=0 failed=0

# expect EXIT_CODE REGEX -- COMMAND...: runs COMMAND, checks its exit code and that its
# combined output matches REGEX (grep -E).
expect() {
    want_rc=$1 pattern=$2
    shift 3
    out=$("$@" 2>&1)
    rc=$?
    checks=$((checks + 1))
    if [ "$rc" -ne "$want_rc" ] || ! printf '%s\n' "$out" | grep -Eq -- "$pattern"; then
        failed=$((failed + 1))
        echo "FAIL: $*"
        echo "  expected exit $want_rc and output matching /$pattern/"
        echo "  got exit $rc and output:"
        printf '%s\n' "$out" | sed 's/^/    /'
    fi
}

expect 0 "^tpar [0-9]+\.[0-9]+\.[0-9]+$" -- "$tpar" --version
expect 0 "usage: tpar <command>" -- "$tpar" --help
expect 2 "usage: tpar <command>" -- "$tpar"
expect 2 "unknown command 'frobnicate'" -- "$tpar" frobnicate
expect 2 "unknown option '--frobnicate'" -- "$tpar" --frobnicate
expect 0 "blas: +OpenBLAS" -- "$tpar" info
expect 0 "cores: +[0-9]+ online" -- "$tpar" info
expect 2 "unknown option '--bogus'.*" -- "$tpar" info --bogus
expect 2 "hint: 'tpar info --help'" -- "$tpar" info --bogus
expect 2 "unexpected argument 'extra'" -- "$tpar" info extra
for cmd in train generate launch bench plan info; do
    expect 0 "usage: tpar $cmd" -- "$tpar" "$cmd" --help
done

echo "test_cli: $checks checks, $failed failed"
[ "$failed" -eq 0 ]
