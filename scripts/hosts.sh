#!/bin/sh
# A multi-host test bed on one machine: N network namespaces ("hosts"), each with its own
# loopback and hostname, joined by veth pairs to a bridge that lives in a namespace of its own,
# addresses on a private /24 that exists only inside these namespaces, links optionally shaped
# with tc tbf. Open MPI runs across them over TCP (docs/HOSTS.md).
#
#   scripts/hosts.sh run [-n N] [--slots S] [--rate RATE] [--subnet A.B.C] -- COMMAND [ARGS...]
#       makes the hosts, runs COMMAND in host 0 (its namespace and hostname) with Open MPI
#       pointed at all of them (OMPI_MCA_* variables, below), removes everything on exit,
#       whatever the exit (trap), and exits with COMMAND's status.
#   scripts/hosts.sh check      prints "ok", or "skipped: <reason>" and exits 1
#   scripts/hosts.sh list       the test-bed namespaces that exist now
#   scripts/hosts.sh cleanup    removes the namespaces and files of runs whose process is gone
#   scripts/hosts.sh --help
#
# Inside COMMAND: TPAR_HOSTS (the host names, space separated), TPAR_HOSTS_HOSTFILE, and
# OMPI_MCA_orte_default_hostfile, _plm_rsh_agent (tests/hosts/nsexec-agent.sh: a host name is
# its namespace), _btl=tcp,self, _pml=ob1, _btl_tcp_if_include and _oob_tcp_if_include (the
# private subnet), so a plain `mpirun -np 4 PROG` places 2 ranks per host (slots=2).
# Names are tparh<pid>-h<i> (hosts) and tparh<pid>-br (bridge): parallel runs do not collide.
# Needs root (or CAP_SYS_ADMIN + CAP_NET_ADMIN), iproute2 (`ip`, `tc`) and util-linux (`unshare`).
set -u

here=$(cd "$(dirname "$0")" && pwd)
agent="$here/../tests/hosts/nsexec-agent.sh"
tmpbase=${TMPDIR:-/tmp}

usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; }

# Prints nothing and returns 0 when namespaces can be made here, else the reason.
why_not() {
    [ "$(id -u)" -eq 0 ] || { echo "not root (network namespaces need CAP_SYS_ADMIN)"; return 1; }
    command -v ip >/dev/null 2>&1 || { echo "no 'ip' (install iproute2)"; return 1; }
    command -v tc >/dev/null 2>&1 || { echo "no 'tc' (install iproute2)"; return 1; }
    command -v unshare >/dev/null 2>&1 || { echo "no 'unshare' (install util-linux)"; return 1; }
    probe="tparh$$-probe"
    if ! msg=$(ip netns add "$probe" 2>&1); then
        echo "cannot create a network namespace: $msg"
        return 1
    fi
    ok=1
    ip netns exec "$probe" unshare --uts true 2>/dev/null || ok=0
    ip netns del "$probe" 2>/dev/null
    [ $ok -eq 1 ] || { echo "unshare --uts refused inside a network namespace"; return 1; }
    return 0
}

# Removes everything of run PFX (namespaces, its files): processes left inside its namespaces
# (ranks, orted) are killed by pid first, since a namespace lives while a process is in it.
teardown() {
    pfx=$1
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$pfx-"); do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    done
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$pfx-"); do
        ip netns del "$ns" 2>/dev/null
    done
    rm -rf "${tmpbase:?}/$pfx"
}

# tbf burst: 10 ms of the rate (at least 64 KiB), so the bucket refills within a timer tick.
burst_of() {
    echo "$1" | awk '{ r = $1; m = 1; u = tolower(r)
        if (u ~ /gbit$/) m = 1e9; else if (u ~ /mbit$/) m = 1e6; else if (u ~ /kbit$/) m = 1e3; else m = 0
        sub(/[a-zA-Z]+$/, "", r); b = int(r * m / 8 / 100); if (b < 65536) b = 65536; print b }'
}

cmd_run() {
    n=2 slots=2 rate="" subnet=10.77.0
    while [ $# -gt 0 ]; do
        case $1 in
        -n) n=$2; shift 2 ;;
        --slots) slots=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --subnet) subnet=$2; shift 2 ;;
        --) shift; break ;;
        *) echo "hosts.sh run: unknown option '$1' (see --help)" >&2; exit 2 ;;
        esac
    done
    [ $# -gt 0 ] || { echo "hosts.sh run: no command after --" >&2; exit 2; }
    case $n in '' | *[!0-9]*) echo "hosts.sh run: -n expects an integer in [1, 200], got '$n'" >&2; exit 2 ;; esac
    [ "$n" -ge 1 ] && [ "$n" -le 200 ] || { echo "hosts.sh run: -n expects an integer in [1, 200], got '$n'" >&2; exit 2; }
    case $slots in '' | *[!0-9]* | 0) echo "hosts.sh run: --slots expects a positive integer, got '$slots'" >&2; exit 2 ;; esac
    case $subnet in 10.*.* | 192.168.* | 172.*.*) ;; *)
        echo "hosts.sh run: --subnet expects the first three octets of a private /24 (10.x.y, 172.x.y, 192.168.x), got '$subnet'" >&2
        exit 2 ;;
    esac
    if [ -n "$rate" ] && ! echo "$rate" | grep -Eq '^[0-9]+(\.[0-9]+)?[kmgKMG]bit$'; then
        echo "hosts.sh run: --rate expects e.g. 1gbit, 10gbit, 500mbit, got '$rate'" >&2
        exit 2
    fi
    if reason=$(why_not); then :; else
        echo "skipped: $reason"
        exit 0
    fi
    pfx="tparh$$"
    trap 'teardown "$pfx"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    mkdir -p "$tmpbase/$pfx" || exit 1
    br="$pfx-br"
    set -e
    ip netns add "$br"
    ip -n "$br" link set lo up
    ip -n "$br" link add br0 type bridge
    ip -n "$br" link set br0 up
    hosts="" hostfile="$tmpbase/$pfx/hostfile"
    : >"$hostfile"
    i=0
    while [ $i -lt "$n" ]; do
        h="$pfx-h$i"
        ip netns add "$h"
        ip -n "$h" link set lo up
        # both ends are created inside the namespaces: the root namespace never sees them
        ip -n "$h" link add eth0 type veth peer name v$i netns "$br"
        ip -n "$br" link set v$i master br0
        ip -n "$br" link set v$i up
        ip -n "$h" addr add "$subnet.$((i + 1))/24" dev eth0
        ip -n "$h" link set eth0 up
        if [ -n "$rate" ]; then # egress of both ends: each direction of the link is shaped once
            b=$(burst_of "$rate")
            ip netns exec "$h" tc qdisc add dev eth0 root tbf rate "$rate" burst "$b" latency 50ms
            ip netns exec "$br" tc qdisc add dev v$i root tbf rate "$rate" burst "$b" latency 50ms
        fi
        hosts="$hosts${hosts:+ }$h"
        echo "$h slots=$slots" >>"$hostfile"
        i=$((i + 1))
    done
    set +e
    h0="$pfx-h0"
    export TPAR_HOSTS="$hosts" TPAR_HOSTS_HOSTFILE="$hostfile"
    export OMPI_MCA_orte_default_hostfile="$hostfile" OMPI_MCA_plm_rsh_agent="$agent"
    export OMPI_MCA_btl=tcp,self OMPI_MCA_pml=ob1
    export OMPI_MCA_btl_tcp_if_include="$subnet.0/24" OMPI_MCA_oob_tcp_if_include="$subnet.0/24"
    # not exec: the trap must run after COMMAND ends
    ip netns exec "$h0" unshare --uts sh -c 'hostname "$0" && exec "$@"' "$h0" "$@"
    exit $?
}

cmd_cleanup() {
    seen=""
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^tparh[0-9][0-9]*-'); do
        pfx=${ns%%-*}
        pid=${pfx#tparh}
        case " $seen " in *" $pfx "*) continue ;; esac
        seen="$seen $pfx"
        if kill -0 "$pid" 2>/dev/null; then
            echo "hosts.sh: $pfx belongs to live process $pid; kept"
        else
            teardown "$pfx"
            echo "hosts.sh: removed $pfx (process $pid is gone)"
        fi
    done
    for d in "$tmpbase"/tparh[0-9]*; do
        [ -d "$d" ] || continue
        pid=${d##*/tparh}
        kill -0 "$pid" 2>/dev/null || rm -rf "$d"
    done
}

case ${1:-} in
run) shift; cmd_run "$@" ;;
check)
    if reason=$(why_not); then echo ok; else echo "skipped: $reason"; exit 1; fi ;;
list) ip netns list 2>/dev/null | awk '{print $1}' | grep '^tparh[0-9][0-9]*-' ;;
cleanup) cmd_cleanup ;;
-h | --help | help) usage ;;
*) usage >&2; exit 2 ;;
esac
