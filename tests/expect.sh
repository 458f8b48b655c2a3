# Sourced by the shell test scripts: check counters, `expect` and `check_file`.
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

# check_file DESCRIPTION REGEX FILE: checks that FILE (a command's saved output) matches REGEX.
check_file() {
    checks=$((checks + 1))
    if ! grep -Eq -- "$2" "$3"; then
        failed=$((failed + 1))
        echo "FAIL: $1: output should match '$2':"
        sed 's/^/    /' "$3"
    fi
}
