#!/usr/bin/env bash
# ListContainerStats latency: crid beside Debian's containerd, both over
# CRI, inside one network namespace made here (same set-up as pods.sh: the
# rig's registry, one CNI bridge per runtime). For each count in COUNTS it
# tops both runtimes up to that many running pods of one busybox container
# (bench/cmd/podbench -leave; pod cgroups under /podbench), then times ListContainerStats and
# ListPodSandboxStats on each (bench/statsbench), alternating runtimes.
# Run as root; see README.md.
#
#   bash bench/stats.sh [-n N] [-s "10 50 100"] [-k]
#     -n N  timed calls per runtime and count (default 50)
#     -s S  container counts (default "10 50 100")
#     -k    keep the temp dir and logs
set -euo pipefail

N=50
COUNTS="10 50 100"
KEEP=0
while getopts "n:s:kh" opt; do
	case $opt in
	n) N=$OPTARG ;;
	s) COUNTS=$OPTARG ;;
	k) KEEP=1 ;;
	*)
		sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
		exit 2
		;;
	esac
done
[[ $EUID -eq 0 ]] || { echo "stats.sh: must run as root" >&2; exit 1; }
NCRICTL=1 NMEM=1 CRITEST=0
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
BIN=$REPO/_output/bin
CONTAINERD=/usr/bin/containerd
[[ -x $CONTAINERD ]] || { echo "stats.sh: needs $CONTAINERD" >&2; exit 1; }
IMAGE=docker.io/library/busybox:latest                       # podbench, crictl, runc floor
CRITEST_IMAGE=registry.k8s.io/e2e-test-images/busybox:1.29-2 # critest's default
PAUSE=registry.k8s.io/pause:3.10
TMP=$(mktemp -d /var/tmp/crid-stats.XXXXXX)
NS=crid-bench-$$
NSPATH=/run/netns/$NS
RUNTIMES=(crid containerd)
PIDS=()
declare -A SOCK LOG DPID SUBNET BRIDGE CRICTL_T
SUBNET=([crid]=10.88.0.0/16 [containerd]=10.89.0.0/16)
BRIDGE=([crid]=crid0 [containerd]=ctrd0)
FLOOR_ROOT=$TMP/floor/runc
CG_NAMES="crid podbench crid-bench-floor test.slice k8s.io" # top-level cgroups the runs make

# What existed before, so that cleanup removes only what this run made.
cg_list() { for n in $CG_NAMES; do ls -d /sys/fs/cgroup/*/"$n" 2>/dev/null || true; done; }
CG_BEFORE=$(cg_list)
NETNS_BEFORE=$(ls /run/netns 2>/dev/null || true)

# Daemons are started with nsenter itself, not this function, so that $! is
# the daemon's PID (nsenter execs it) and not a subshell's.
inns() { nsenter --net="$NSPATH" "$@"; }

crictl_() { # crictl_ RUNTIME ARGS...
	local s=unix://${SOCK[$1]}
	shift
	inns "$CRICTL" --config "$TMP/crictl.yaml" --runtime-endpoint "$s" --image-endpoint "$s" \
		--timeout 300s "$@"
}

# procs_under DIR: pids of processes whose command line names DIR/ (conmons,
# shims, runc).
procs_under() {
	local p
	for p in /proc/[0-9]*; do
		[[ ${p#/proc/} == "$$" || ${p#/proc/} == "$BASHPID" ]] && continue
		tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF "$1/" && echo "${p#/proc/}"
	done
	return 0
}

cleanup() {
	local rc=$? r pid c n t ids sub
	set +e
	trap - INT TERM
	for r in "${RUNTIMES[@]}"; do
		[[ -n ${DPID[$r]:-} ]] && kill -0 "${DPID[$r]}" 2>/dev/null && crictl_ "$r" rmp -fa >/dev/null 2>&1
	done
	for c in $(runc --root "$FLOOR_ROOT" list -q 2>/dev/null); do runc --root "$FLOOR_ROOT" delete -f "$c"; done
	stop_pids
	# Whatever outlived its daemon (a conmon or shim of a failed run): by PID.
	for pid in $(procs_under "$TMP"); do kill -KILL "$pid" 2>/dev/null; done
	umount_under "$TMP"
	# containerd pins pod network namespaces under /run/netns as cni-<uuid>.
	for n in $(ls /run/netns 2>/dev/null); do
		[[ $n == cni-* ]] && ! grep -qx "$n" <<<"$NETNS_BEFORE" && ip netns delete "$n"
	done
	[[ -e $NSPATH ]] && ip netns delete "$NS"
	# Cgroups the runtimes and the floor left (containerd: /k8s.io/<id> or
	# critest's /test.slice; crid: /crid/crid-<id>; podbench: /podbench/pod<uid>).
	# A top-level one that existed before (other users of /crid) keeps all
	# but the cgroups named after IDs in this run's runtime logs.
	ids=$(cat "${LOG[@]}" 2>/dev/null | grep -oE '[0-9a-f]{64}' | sort -u)
	for c in $(cg_list); do
		if grep -qx "$c" <<<"$CG_BEFORE"; then
			find "$c" -mindepth 1 -depth -type d | while read -r sub; do
				grep -qx "$(basename "$sub" | sed 's/^crid-//')" <<<"$ids" && rmdir "$sub"
			done
			continue
		fi
		find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
		[[ -d $c ]] && log "could not remove cgroup $c"
	done
	# The CNI chains live in $NS and went with it; none in the host's
	# namespace may name the test subnets, bridges or networks.
	for t in nat filter; do
		iptables -t "$t" -S 2>/dev/null | grep -E '10\.8[89]\.|crid0|ctrd0|crid-bench-' |
			while read -r line; do
				[[ $line == -A* ]] && eval "iptables -t $t -D ${line#-A }"
			done
	done
	if ((KEEP)); then
		log "kept $TMP"
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- binaries -----------------------------------------------------------------
build_bins
(cd "$REPO" && go build -o "$BIN/podbench" ./bench/cmd/podbench && go build -o "$BIN/statsbench" ./bench/statsbench)
find_crictl
CRITEST_BIN=$BIN/critest
if ((CRITEST)) && [[ ! -x $CRITEST_BIN ]]; then
	log "installing critest v1.37.0"
	(cd "$REPO" && bash hack/install-deps.sh)
fi

# --- network namespace, registry -------------------------------------------------
ip netns add "$NS"
inns ip link set lo up
HOSTS=$TMP/hosts
log "starting rig in netns $NS"
nsenter --net="$NSPATH" "$BIN/rig" serve --addr 127.0.0.1:0 --hosts-dir "$HOSTS" --ready-file "$TMP/rig.ready" \
	>"$TMP/rig.log" 2>&1 &
PIDS+=($!)
wait_for test -s "$TMP/rig.ready" || { cat "$TMP/rig.log" >&2; exit 1; }

conflist() { # conflist RUNTIME DIR
	mkdir -p "$2"
	cat >"$2/10-bench.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "crid-bench-$1",
  "plugins": [
    {"type": "bridge", "bridge": "${BRIDGE[$1]}", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$TMP/$1/ipam", "ranges": [[{"subnet": "${SUBNET[$1]}"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
  ]
}
JSON
}

# --- crid ---------------------------------------------------------------------
d=$TMP/crid
mkdir -p "$d/root" "$d/state"
conflist crid "$d/net.d"
SOCK[crid]=$d/crid.sock
LOG[crid]=$d/crid.log
log "starting crid"
nsenter --net="$NSPATH" "$BIN/crid" --root "$d/root" --state "$d/state" --listen "unix://${SOCK[crid]}" \
	--registry-config-dir "$HOSTS" --cni-conf-dir "$d/net.d" --log-level info >"${LOG[crid]}" 2>&1 &
DPID[crid]=$!
PIDS+=($!)
wait_for crictl_ crid images || { cat "${LOG[crid]}" >&2; exit 1; }

# --- containerd -----------------------------------------------------------------
d=$TMP/containerd
conflist containerd "$d/net.d"
containerd_config "$d" "$HOSTS" /usr/lib/cni "$d/net.d"
SOCK[containerd]=$d/containerd.sock
LOG[containerd]=$d/containerd.log
log "starting containerd"
nsenter --net="$NSPATH" "$CONTAINERD" --config "$d/config.toml" >"${LOG[containerd]}" 2>&1 &
DPID[containerd]=$!
PIDS+=($!)
wait_for crictl_ containerd images || { tail -50 "${LOG[containerd]}" >&2; exit 1; }

pull_all() { local i; for i in "$IMAGE" "$CRITEST_IMAGE" "$PAUSE"; do crictl_ "$1" pull "$i" >/dev/null; done; }
for r in "${RUNTIMES[@]}"; do pull_all "$r"; done
log "images pulled"

# --- ListContainerStats with 10, 50, 100 running containers ---------------------
echo "# $(machine_line); crid $("$BIN/crid" version | awk '{print $2}'), $($CONTAINERD --version | awk '{print $2, $3}'); -n $N"
echo "# call containers runtime median_ms p90_ms min_ms max_ms stats"
have=0
for want in $COUNTS; do
	for r in "${RUNTIMES[@]}"; do
		log "$r: starting $((want - have)) pods"
		inns "$BIN/podbench" -endpoint "unix://${SOCK[$r]}" -leave $((want - have)) -image "$IMAGE" \
			-log-dir "$TMP/logs-$r" >/dev/null
	done
	have=$want
	sleep 2 # let the new containers settle
	for call in containers pods; do
		flag=""
		[[ $call == pods ]] && flag=-pods
		for r in "${RUNTIMES[@]}"; do
			printf '%s %s %s ' "$call" "$want" "$r"
			inns "$BIN/statsbench" -endpoint "unix://${SOCK[$r]}" -n "$N" $flag -want "$([[ $call == containers ]] && echo "$want" || echo 0)" || echo "failed"
		done
	done
done
