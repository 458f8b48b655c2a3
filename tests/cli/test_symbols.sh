#!/bin/sh
# Library hygiene (#14): the INSTALLED libtpar.a exports only `tpar_`-prefixed symbols, every
# function a public header marks TPAR_API is among them, and no two files under src/ share a
# basename. Excepted, because neither we nor a user's program can name them: symbols the compiler
# or OpenMP generate (names starting with `.` or `__`, e.g. `.omp_outlined.`, `__odr_asan.*`,
# `__asan_*` / `__ubsan_*` in sanitizer builds).
# usage: test_symbols.sh BUILD_DIR SOURCE_DIR
set -u
build=$1 src=$2
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
nfail=0 nchk=0
check() { nchk=$((nchk + 1)); if [ "$1" != 0 ]; then nfail=$((nfail + 1)); echo "FAIL: $2"; fi; }

cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; echo "FAIL: cmake --install"; exit 1; }
lib=$(find "$tmp/prefix" -name libtpar.a | head -n 1)
[ -n "$lib" ] || { echo "FAIL: libtpar.a not installed"; exit 1; }

# 1. global defined symbols: `tpar_` prefix only
nm -g --defined-only "$lib" | awk 'NF == 3 { print $3 }' | sort -u >"$tmp/globals"
[ -s "$tmp/globals" ]; check $? "no global symbols at all in $lib"
grep -v -e '^tpar_' -e '^\.' -e '^__' "$tmp/globals" >"$tmp/bad"
[ ! -s "$tmp/bad" ]; check $? "exported without the tpar_ prefix: $(tr '\n' ' ' <"$tmp/bad")"

# 2. every TPAR_API function of the public headers that the library defines is exported (the
#    build tree's archive tells which are defined at all: MPI-only functions may be absent)
nm --defined-only "$build/libtpar.a" 2>/dev/null | awk 'NF == 3 { print $3 }' | sort -u >"$tmp/defined"
sed -n 's/^TPAR_API[^(]*[^A-Za-z0-9_]\(tpar_[A-Za-z0-9_]*\)(.*/\1/p' "$src"/include/tpar/*.h | sort -u >"$tmp/api"
[ -s "$tmp/api" ]; check $? "no TPAR_API declarations found in include/tpar"
comm -12 "$tmp/api" "$tmp/defined" | comm -23 - "$tmp/globals" >"$tmp/hidden"
[ ! -s "$tmp/hidden" ]; check $? "public API hidden in the installed library: $(tr '\n' ' ' <"$tmp/hidden")"

# 2b. no function declared in a public header without TPAR_API (it would be hidden in the
#     installed library while its header promises it); static inline helpers are not exported
grep -hE '^[a-z_][a-zA-Z0-9_ *]*[^A-Za-z0-9_]tpar_[a-z0-9_]+\(' "$src"/include/tpar/*.h |
    grep -vE '^(TPAR_API|static|typedef)' >"$tmp/unmarked"
[ ! -s "$tmp/unmarked" ]; check $? "public declarations without TPAR_API: $(cut -c1-60 "$tmp/unmarked" | tr '\n' '|')"

# 3. unique source basenames under src/ (a debugger, a profile or a log line names a file by it)
find "$src/src" -type f \( -name '*.c' -o -name '*.h' \) | sed 's#.*/##' | sort | uniq -d >"$tmp/dups"
[ ! -s "$tmp/dups" ]; check $? "basenames used twice under src/: $(tr '\n' ' ' <"$tmp/dups")"

echo "test_symbols: $nchk checks, $nfail failed"
[ "$nfail" = 0 ]
