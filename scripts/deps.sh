#!/bin/sh
# Checks for the Debian packages tpar needs and installs the missing ones.
#   scripts/deps.sh build   what building and running needs
#   scripts/deps.sh test    that, plus what the test suite's independent references need
# As root it runs apt-get; otherwise it prints the exact command and fails.
set -eu

build_pkgs="gcc make cmake pkg-config libopenblas-dev libdnnl-dev libopenmpi-dev openmpi-bin libjansson-dev zlib1g-dev libpcre2-dev"
test_pkgs="python3 python3-numpy python3-torch chromium iproute2 clang libclang-rt-14-dev"

case "${1:-build}" in
build) want=$build_pkgs ;;
test) want="$build_pkgs $test_pkgs" ;;
*) echo "usage: scripts/deps.sh build|test" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "deps: missing packages:$missing, and this is not a Debian-like system (no apt-get)." >&2
    echo "deps: install the equivalents of:$missing" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing packages:$missing" >&2
    echo "deps: install them with:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends $missing
