#!/bin/sh
# Open MPI's "ssh" for the test bed of scripts/hosts.sh (--mca plm_rsh_agent): a host name is
# the network namespace of that name. Runs the command there in a UTS namespace of its own whose
# hostname is the host name, so Open MPI and tpar see one hostname per "host".
#   nsexec-agent.sh [ssh options...] HOST COMMAND...
# Open MPI passes the remote command as ssh would (words to be run by a shell), so they are
# joined and run by sh -c. Only the test bed's namespaces (tparh<pid>-...) are accepted.
while [ $# -gt 0 ]; do
    case $1 in
    -*) shift ;;
    *) break ;;
    esac
done
host=${1:-}
[ $# -ge 2 ] || { echo "nsexec-agent: usage: nsexec-agent.sh HOST COMMAND..." >&2; exit 255; }
shift
case $host in
tparh[0-9]*-h[0-9]*) ;;
*) echo "nsexec-agent: '$host' is not a test-bed host (tparh<pid>-h<i>)" >&2; exit 255 ;;
esac
if ! ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$host"; then
    echo "nsexec-agent: no namespace '$host' (is scripts/hosts.sh run still running?)" >&2
    exit 255
fi
exec ip netns exec "$host" unshare --uts sh -c 'hostname "$0" && exec sh -c "$*"' "$host" "$@"
