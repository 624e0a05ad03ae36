#!/usr/bin/env bash
# Runs Kubernetes' node end-to-end suite (k8s.io/kubernetes/test/e2e_node,
# the release test/nodee2e/go.mod pins) against crid, or against Debian's
# containerd for comparison, offline, and prints "N passed, N failed, N
# skipped" from the suite's JSON report.
#
#   test/nodee2e/run.sh              # the CI subset (subset.txt), on crid
#   test/nodee2e/run.sh full         # every [NodeConformance] spec not
#                                    # [Serial], [Slow], [Flaky], [Disruptive]
#                                    # or [Alpha] (~35 min on 2 cores)
#   NODEE2E_RUNTIME=containerd test/nodee2e/run.sh full
#   NODEE2E_FOCUS='Summary API' test/nodee2e/run.sh   # one group
#   NODEE2E_PROCS=6                  # parallel ginkgo processes (default 6)
#
# The suite starts etcd, kube-apiserver and the kubelet (_output/bin/kubelet)
# itself; the runtime, the test rig's registry and CNI are started here. All
# of it runs inside a network namespace, a mount namespace and a cgroup
# namespace and a PID namespace made here (node.sh), so that the kubelet
# sees a node of its own:
# a cgroup root holding only the test's processes (it moves those it finds
# there into /system), /var/lib/kubelet and /var/log/pods on a scratch dir,
# mounts that never reach the host. Every spec in skip.txt is skipped, for
# the reason written beside it. Exit status: 0 when no spec failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="/usr/local/go/bin:$PATH" GOFLAGS=-buildvcs=false
REPO=$PWD
BIN=$REPO/_output/bin

SELECTION=${1:-subset}
case $SELECTION in subset | full) ;; *) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;; esac
RUNTIME=${NODEE2E_RUNTIME:-crid}
case $RUNTIME in crid | containerd) ;; *) echo "run.sh: NODEE2E_RUNTIME is crid or containerd" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "run.sh: run as root" >&2; exit 1; }

bash test/nodee2e/build.sh
[ -x "$BIN/crid" ] || go build -o "$BIN/crid" ./cmd/crid
[ -x "$BIN/rig" ] || go build -o "$BIN/rig" ./test/rig/cmd/rig

work=$(mktemp -d /tmp/crid-nodee2e.XXXXXX)
chmod 0711 "$work"
ns="crid-nodee2e-$$"
NODE_NAME=nodee2e NODE_IP=10.201.0.2
cg="crid-nodee2e-$$"

# The cgroup hierarchies of this host: every v1 hierarchy and the v2 one.
mapfile -t hierarchies < <(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i+1) ~ /^cgroup2?$/) print $5; break } }' /proc/self/mountinfo)
# The kubelet's fixed paths: node.sh mounts scratch dirs on them, in its own
# mount namespace; mount points made here are removed after.
made=()
for d in /var/lib/kubelet /var/log/pods /var/log/containers; do
	[ -d "$d" ] || { mkdir -p "$d"; made+=("$d"); }
done

inner=""
cleanup() {
	local rc=$?
	# The node's processes (runtime, monitors, containers, kubelet, the
	# suite) all live in the cgroup made here: end them by PID.
	for _ in $(seq 50); do
		local pids
		pids=$(for h in "${hierarchies[@]}"; do find "$h/$cg" -name cgroup.procs -exec cat {} + 2>/dev/null; done | sort -u)
		[ -n "$pids" ] || break
		# shellcheck disable=SC2086
		kill -9 $pids 2>/dev/null || true
		sleep 0.2
	done
	[ -z "$inner" ] || wait "$inner" 2>/dev/null || true
	for h in "${hierarchies[@]}"; do
		[ -d "$h/$cg" ] && find "$h/$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
	done
	ip netns delete "$ns" 2>/dev/null || true
	for d in "${made[@]}"; do rmdir "$d" 2>/dev/null || true; done
	rm -rf "$work"
	exit $rc
}
trap cleanup EXIT INT TERM

ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
# kube-apiserver advertises the address of the default route's interface:
# a veth pair with both ends in the namespace gives it one, and the route's
# gateway is an address no one has, so nothing leaves the namespace.
ip -n "$ns" link add nodee2e0 type veth peer name nodee2e1
ip -n "$ns" addr add "$NODE_IP/24" dev nodee2e0
ip -n "$ns" link set nodee2e0 up
ip -n "$ns" link set nodee2e1 up
ip -n "$ns" route add default via 10.201.0.1
for h in "${hierarchies[@]}"; do
	mkdir "$h/$cg"
	# A v1 cpuset cgroup takes no task before it has CPUs and memory nodes.
	if [ -e "$h/cpuset.cpus" ] && [ -e "$h/$cg/cpuset.mems" ]; then
		cat "$h/cpuset.cpus" >"$h/$cg/cpuset.cpus"
		cat "$h/cpuset.mems" >"$h/$cg/cpuset.mems"
	fi
done

# node.sh joins the cgroups first (as the child of a shell that did), then
# the namespaces: unshare makes the cgroup namespace's root its cgroup, and
# node.sh PID 1 of a PID namespace (the kubelet reads init's namespaces).
export WORK=$work NS=$ns NODE_NAME NODE_IP RUNTIME SELECTION BIN REPO NODEE2E_FOCUS="${NODEE2E_FOCUS:-}" NODEE2E_PROCS="${NODEE2E_PROCS:-6}" NODEE2E_CRID_ARGS="${NODEE2E_CRID_ARGS:-}"
bash -c '
	for h in "$@"; do echo $$ >"$h/'"$cg"'/cgroup.procs"; done
	exec nsenter --net="/run/netns/$NS" unshare --mount --cgroup --pid --fork --mount-proc --propagation private \
		bash "$REPO/test/nodee2e/node.sh"
' node "${hierarchies[@]}" &
inner=$!
rc=0
wait "$inner" || rc=$?
inner=""

# The reports and logs stay in _output/nodee2e/RUNTIME-SELECTION.
out=$REPO/_output/nodee2e/$RUNTIME-$SELECTION
rm -rf "$out"
mkdir -p "$out"
cp -r "$work/report/." "$out/" 2>/dev/null || true
cp "$work"/*.log "$out/" 2>/dev/null || true
report=$out/report.json
if [ ! -s "$report" ]; then
	echo "run.sh: the suite wrote no report (exit $rc); its log's tail:"
	tail -n 60 "$out/suite.log" || true
	exit 1
fi
# Specs outside the selection are "skipped" with no message; those the
# suite skipped while running say why.
jq -r '[.[] | (.SpecReports // [])[] | select(.LeafNodeType == "It")] |
	"\(map(select(.State == "passed")) | length) passed, \(map(select(.State != "passed" and .State != "skipped" and .State != "pending")) | length) failed, \(map(select(.State == "skipped" and (.Failure.Message // "") != "")) | length) skipped (of \(length) specs; the rest not selected)"' "$report"
jq -r '.[] | (.SpecReports // [])[] | select(.State != "passed" and .State != "skipped" and .State != "pending") |
	"FAILED (\(.State)): \(if .LeafNodeType == "It" then "" else "[\(.LeafNodeType)] " end)\(.ContainerHierarchyTexts | join(" ")) \(.LeafNodeText)"' "$report"
jq -e 'all(.[]; .SuiteSucceeded)' "$report" >/dev/null || rc=1
jq -r '.[] | (.SpecReports // [])[] | select(.LeafNodeType == "It" and .State == "skipped" and (.Failure.Message // "") != "") |
	"skipped: \(.ContainerHierarchyTexts | join(" ")) \(.LeafNodeText): \(.Failure.Message | split("\n")[0])"' "$report"
echo "run.sh: reports and logs in $out"
exit $rc
