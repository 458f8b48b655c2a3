#!/bin/sh
# `cmake --install` gives a usable package: headers, library, CLI, and a relocatable tpar.pc
# with which a program compiles, links and runs.
# usage: test_install.sh BUILD_DIR C_COMPILER
set -u
build=$1 cc=$2
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; echo "test_install: 1 failed"; exit 1; }

cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; fail "cmake --install"; }
for f in bin/tpar include/tpar/core.h include/tpar/comm.h; do
    [ -e "$tmp/prefix/$f" ] || fail "missing $f after install"
done
pc=$(find "$tmp/prefix" -name tpar.pc | head -n 1)
[ -n "$pc" ] || fail "tpar.pc not installed"
cat >"$tmp/use.c" <<'C'
#include <stdio.h>
#include <tpar/core.h>
int main(void) { printf("%s %s\n", TPAR_VERSION_STRING, tpar_status_str(TPAR_ERR_TIMEOUT)); return 0; }
C
flags=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --cflags --libs tpar) || fail "pkg-config tpar"
"$cc" "$tmp/use.c" $flags -o "$tmp/use" || fail "compiling against the installed tpar"
out=$("$tmp/use") || fail "running the program linked against tpar"
[ "$out" = "$("$tmp/prefix/bin/tpar" --version | cut -d' ' -f2) timeout" ] || fail "unexpected output: $out"
echo "test_install: 4 checks, 0 failed"
