#!/bin/sh
# The tpar program's front door: help, version, unknown commands and options.
# usage: test_cli.sh PATH_TO_TPAR
tpar=$1
. "$(dirname "$0")/../expect.sh"

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
