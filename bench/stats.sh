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
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=50
COUNTS="10 50 100"
KEEP=0
while getopts "n:s:kh" opt; do
	case $opt in
	n) N=$OPTARG ;;
	s) COUNTS=$OPTARG ;;
	k) KEEP=1 ;;
	*) usage ;;
	esac
done
# shellcheck disable=SC2086 # word splitting wanted
want_posint "-n and -s want positive integers" "$N" $COUNTS
bench_init crid-stats
netns_init "crid podbench crid-bench-floor test.slice k8s.io" # top-level cgroups the runs make
IMAGE=docker.io/library/busybox:latest                       # podbench
CRITEST_IMAGE=registry.k8s.io/e2e-test-images/busybox:1.29-2 # pulled as in pods.sh
PAUSE=registry.k8s.io/pause:3.10

# --- binaries -----------------------------------------------------------------
build_bins ./bench/cmd/podbench ./bench/statsbench
find_crictl

# --- network namespace, registry, crid, containerd --------------------------------
start_in_netns
for r in "${RUNTIMES[@]}"; do pull_images "$r" "$IMAGE" "$CRITEST_IMAGE" "$PAUSE"; done
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
