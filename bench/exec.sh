#!/usr/bin/env bash
# ExecSync latency benchmark (the kubelet's exec probes): crid beside
# Debian's containerd, both over CRI, inside one network namespace made here
# (the rig's registry on its loopback). For each runtime: one pod with a
# sleeping busybox container, then N sequential ExecSync of /bin/true
# (bench/execbench); plus the floor, `runc exec` of /bin/true into crid's
# container by hand. Run as root; see README.md.
#
#   bash bench/exec.sh [-n N] [-k]
#     -n N  timed execs per runtime (default 200)
#     -k    keep the temp dir and logs
set -euo pipefail

N=200
KEEP=0
while getopts "n:kh" opt; do
	case $opt in
	n) N=$OPTARG ;;
	k) KEEP=1 ;;
	*)
		sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
		exit 2
		;;
	esac
done
[[ $N =~ ^[1-9][0-9]*$ ]] || { echo "exec.sh: -n wants a positive integer" >&2; exit 2; }
[[ $EUID -eq 0 ]] || { echo "exec.sh: must run as root" >&2; exit 1; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
BIN=$REPO/_output/bin
CONTAINERD=/usr/bin/containerd
[[ -x $CONTAINERD ]] || { echo "exec.sh: needs $CONTAINERD" >&2; exit 1; }
IMAGE=docker.io/library/busybox:latest
PAUSE=registry.k8s.io/pause:3.10
TMP=$(mktemp -d /var/tmp/crid-exec.XXXXXX)
NS=crid-bench-$$
NSPATH=/run/netns/$NS
RUNTIMES=(crid containerd)
PIDS=()
declare -A SOCK LOG DPID
NETNS_BEFORE=$(ls /run/netns 2>/dev/null || true)

inns() { nsenter --net="$NSPATH" "$@"; }
crictl_() { # crictl_ RUNTIME ARGS...
	local s=unix://${SOCK[$1]}
	shift
	inns "$CRICTL" --config "$TMP/crictl.yaml" --runtime-endpoint "$s" --image-endpoint "$s" --timeout 300s "$@"
}

cleanup() {
	local rc=$? r pid n
	set +e
	trap - INT TERM
	for r in "${RUNTIMES[@]}"; do
		[[ -n ${DPID[$r]:-} ]] && kill -0 "${DPID[$r]}" 2>/dev/null && crictl_ "$r" rmp -fa >/dev/null 2>&1
	done
	stop_pids
	# Whatever outlived its daemon (a conmon or shim): by PID.
	for pid in /proc/[0-9]*; do
		pid=${pid#/proc/}
		[[ $pid == "$$" ]] && continue
		tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF "$TMP/" && kill -KILL "$pid" 2>/dev/null
	done
	umount_under "$TMP"
	for n in $(ls /run/netns 2>/dev/null); do
		[[ $n == cni-* ]] && ! grep -qx "$n" <<<"$NETNS_BEFORE" && ip netns delete "$n"
	done
	[[ -e $NSPATH ]] && ip netns delete "$NS"
	# The pods' cgroups (crid: /crid/crid-<id>; containerd: /k8s.io/<id>), if empty.
	find /sys/fs/cgroup/*/crid /sys/fs/cgroup/*/k8s.io -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null
	if ((KEEP)); then log "kept $TMP"; else rm -rf "$TMP"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build_bins
(cd "$REPO" && go build -o "$BIN/execbench" ./bench/execbench)
find_crictl
printf 'runtime-endpoint: ""\n' >"$TMP/crictl.yaml"

ip netns add "$NS"
inns ip link set lo up
HOSTS=$TMP/hosts
nsenter --net="$NSPATH" "$BIN/rig" serve --addr 127.0.0.1:0 --hosts-dir "$HOSTS" --ready-file "$TMP/rig.ready" \
	>"$TMP/rig.log" 2>&1 &
PIDS+=($!)
wait_for test -s "$TMP/rig.ready" || { cat "$TMP/rig.log" >&2; exit 1; }

# A bridge per runtime, as in pods.sh (containerd 1.6 needs a pod interface
# in the CNI result; the network is not what is measured).
conflist() { # conflist NAME BRIDGE SUBNET DIR
	mkdir -p "$4"
	cat >"$4/10-bench.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "crid-bench-$1", "plugins": [
  {"type": "bridge", "bridge": "$2", "isGateway": true, "ipMasq": true,
   "ipam": {"type": "host-local", "dataDir": "$TMP/$1/ipam", "ranges": [[{"subnet": "$3"}]], "routes": [{"dst": "0.0.0.0/0"}]}}]}
JSON
}
conflist crid crid0 10.88.0.0/16 "$TMP/crid/net.d"
conflist containerd ctrd0 10.89.0.0/16 "$TMP/containerd/net.d"

d=$TMP/crid
mkdir -p "$d/root" "$d/state"
SOCK[crid]=$d/crid.sock
LOG[crid]=$d/crid.log
nsenter --net="$NSPATH" "$BIN/crid" --root "$d/root" --state "$d/state" --listen "unix://${SOCK[crid]}" \
	--registry-config-dir "$HOSTS" --cni-conf-dir "$TMP/crid/net.d" --log-level info >"${LOG[crid]}" 2>&1 &
DPID[crid]=$!
PIDS+=($!)
wait_for crictl_ crid images || { cat "${LOG[crid]}" >&2; exit 1; }

d=$TMP/containerd
containerd_config "$d" "$HOSTS" /usr/lib/cni "$TMP/containerd/net.d"
SOCK[containerd]=$d/containerd.sock
LOG[containerd]=$d/containerd.log
nsenter --net="$NSPATH" "$CONTAINERD" --config "$d/config.toml" >"${LOG[containerd]}" 2>&1 &
DPID[containerd]=$!
PIDS+=($!)
wait_for crictl_ containerd images || { tail -50 "${LOG[containerd]}" >&2; exit 1; }

for r in "${RUNTIMES[@]}"; do
	crictl_ "$r" pull "$IMAGE" >/dev/null
	crictl_ "$r" pull "$PAUSE" >/dev/null
done

declare -A RES
for r in "${RUNTIMES[@]}"; do
	log "execbench -n $N against $r"
	RES[$r]=$(inns "$BIN/execbench" -endpoint "unix://${SOCK[$r]}" -n "$N" -image "$IMAGE" -log-dir "$TMP/$r/pod-logs")
	log "$r: ${RES[$r]}"
done

# The floor: runc exec of /bin/true into a crid container, by hand, with
# the process spec crid would give it.
# execbench removed its pods; run one to exec into.
FLOOR=()
mkdir -p "$TMP/floor"
printf '{"metadata":{"name":"floor","namespace":"bench","uid":"floor"},"log_directory":"%s","linux":{}}' "$TMP/floor" >"$TMP/floor/pod.json"
printf '{"metadata":{"name":"floor"},"image":{"image":"%s"},"command":["sleep","3600"],"log_path":"f.log","linux":{}}' "$IMAGE" >"$TMP/floor/ctr.json"
p=$(crictl_ crid runp "$TMP/floor/pod.json")
cid=$(crictl_ crid create "$p" "$TMP/floor/ctr.json" "$TMP/floor/pod.json")
crictl_ crid start "$cid" >/dev/null
jq '.process | .args = ["/bin/true"] | .terminal = false' "$TMP/crid/state/containers/$cid/config.json" >"$TMP/floor-process.json"
# runc's state root of crid's default handler: where the container's state.json is.
RUNC_ROOT=$(dirname "$(dirname "$(find "$TMP/crid" -path "*/$cid/state.json" | head -1)")")
for ((i = 0; i < N / 4 + 2; i++)); do
	t0=$EPOCHREALTIME
	runc --root "$RUNC_ROOT" exec --process "$TMP/floor-process.json" "$cid" </dev/null >/dev/null
	t1=$EPOCHREALTIME
	((i >= 2)) && FLOOR+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) * 1000 }')")
done
read -r floor_med _ _ < <(stats "${FLOOR[@]}")

med() { awk '{print $3}' <<<"$1"; }
p99() { awk '{print $7}' <<<"$1"; }
echo
echo "$(machine_line)"
echo
echo "| ExecSync /bin/true, $N sequential | median ms | p99 ms | ratio of medians |"
echo "|---|---:|---:|---:|"
cm=$(med "${RES[containerd]}")
for r in "${RUNTIMES[@]}"; do
	echo "| $r | $(med "${RES[$r]}") | $(p99 "${RES[$r]}") | $(awk -v a="$(med "${RES[$r]}")" -v b="$cm" 'BEGIN { printf "%.2f", a / b }') |"
done
echo "| runc exec by hand (floor) | $floor_med | | |"
