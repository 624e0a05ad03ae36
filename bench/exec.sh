#!/usr/bin/env bash
# ExecSync latency benchmark (the kubelet's exec probes): crid beside
# Debian's containerd, both over CRI, inside one network namespace made here
# (the rig's registry on its loopback). For each runtime: one pod with a
# sleeping busybox container, then N sequential ExecSync of /bin/true, the
# runtimes taking turns in blocks of 25 calls (bench/execbench); plus the floor, `runc exec` of /bin/true into crid's
# container by hand. Run as root; see README.md.
#
#   bash bench/exec.sh [-n N] [-k]
#     -n N  timed execs per runtime (default 200)
#     -k    keep the temp dir and logs
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

parse_n_k 200 "$@"
bench_init crid-exec
netns_init "crid k8s.io" # the pods' cgroups: crid /crid/crid-<id>, containerd /k8s.io/<id>
IMAGE=docker.io/library/busybox:latest
PAUSE=registry.k8s.io/pause:3.10

build_bins ./bench/execbench
find_crictl
printf 'runtime-endpoint: ""\n' >"$TMP/crictl.yaml"

start_in_netns
for r in "${RUNTIMES[@]}"; do pull_images "$r" "$IMAGE" "$PAUSE"; done

# One execbench for both runtimes: they take turns in blocks of calls, so a
# load spike on this shared machine hits both alike.
declare -A RES
eps=()
for r in "${RUNTIMES[@]}"; do eps+=("$r=unix://${SOCK[$r]}"); done
log "execbench -n $N, interleaved: ${RUNTIMES[*]}"
out=$(inns "$BIN/execbench" -endpoint "$(IFS=,; echo "${eps[*]}")" -n "$N" -image "$IMAGE" -log-dir "$TMP/pod-logs")
for r in "${RUNTIMES[@]}"; do
	RES[$r]=$(awk -v r="$r" '$1 == r { $1 = ""; sub(/^ /, ""); print }' <<<"$out")
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
	((i >= 2)) && FLOOR+=("$(ms_between "$t0" "$t1")")
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
