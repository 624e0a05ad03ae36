#!/usr/bin/env bash
# Pod and container start benchmark: crid beside Debian's containerd, both
# over CRI, inside one network namespace made here (bridges crid0 10.88.0.0/16
# and ctrd0 10.89.0.0/16, the rig's registry on its loopback). Measures:
# critest -benchmark; RunPodSandbox/CreateContainer/StartContainer latency
# (bench/cmd/podbench); the runc create+start floor; crictl runp+create+start
# wall time; PSS/RSS per pod of monitors and infra processes with 10 pods.
# Run as root; see README.md.
#
#   bash bench/pods.sh [-n N] [-c N] [-m N] [-C] [-k]
#     -n N  podbench and runc floor iterations (default 30)
#     -c N  crictl runp+create+start rounds (default 10)
#     -m N  pods for the memory measurement (default 10)
#     -C    skip critest -benchmark
#     -k    keep the temp dir and logs
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=30
NCRICTL=10
NMEM=10
CRITEST=1
KEEP=0
while getopts "n:c:m:Ckh" opt; do
	case $opt in
	n) N=$OPTARG ;;
	c) NCRICTL=$OPTARG ;;
	m) NMEM=$OPTARG ;;
	C) CRITEST=0 ;;
	k) KEEP=1 ;;
	*) usage ;;
	esac
done
want_posint "-n/-c/-m want positive integers" "$N" "$NCRICTL" "$NMEM"
bench_init crid-pods
netns_init "crid podbench crid-bench-floor test.slice k8s.io" # top-level cgroups the runs make
IMAGE=docker.io/library/busybox:latest                       # podbench, crictl, runc floor
CRITEST_IMAGE=registry.k8s.io/e2e-test-images/busybox:1.29-2 # critest's default
PAUSE=registry.k8s.io/pause:3.10
declare -A CRICTL_T
FLOOR_ROOT=$TMP/floor/runc
floor_cleanup() {
	local c
	for c in $(runc --root "$FLOOR_ROOT" list -q 2>/dev/null); do runc --root "$FLOOR_ROOT" delete -f "$c"; done
}
CLEANUP_HOOKS+=(floor_cleanup)

# --- binaries -----------------------------------------------------------------
build_bins ./bench/cmd/podbench
find_crictl
CRITEST_BIN=$BIN/critest
if ((CRITEST)) && [[ ! -x $CRITEST_BIN ]]; then
	log "installing critest v1.37.0"
	(cd "$REPO" && bash hack/install-deps.sh)
fi

# --- network namespace, registry, crid, containerd --------------------------------
start_in_netns
pull_all() { pull_images "$1" "$IMAGE" "$CRITEST_IMAGE" "$PAUSE"; }
for r in "${RUNTIMES[@]}"; do pull_all "$r"; done
log "images pulled"

# --- 1. critest -benchmark --------------------------------------------------------
# critest's defaults (all counts 0) skip every lifecycle benchmark but one; the
# cri-tools docs' example asks for 1000 pods and 100 containers. Fewer here.
cat >"$TMP/critest-params.yaml" <<'YAML'
containersNumber: 50
containersNumberParallel: 1
podsNumber: 50
podsNumberParallel: 1
imagesNumber: 10
imagesNumberParallel: 1
YAML
if ((CRITEST)); then
	for r in "${RUNTIMES[@]}"; do
		log "critest -benchmark against $r"
		mkdir -p "$TMP/critest-$r"
		inns "$CRITEST_BIN" -benchmark --runtime-endpoint "unix://${SOCK[$r]}" --image-endpoint "unix://${SOCK[$r]}" \
			-benchmarking-params-file "$TMP/critest-params.yaml" -benchmarking-output-dir "$TMP/critest-$r" \
			-ginkgo.no-color >"$TMP/critest-$r.log" 2>&1 || { tail -40 "$TMP/critest-$r.log" >&2; exit 1; }
		"$BIN/podbench" -critest-summary "$TMP/critest-$r" >"$TMP/critest-$r.summary"
		cat "$TMP/critest-$r.summary" >&2
		crictl_ "$r" rmp -fa >/dev/null
		pull_all "$r" # the image benchmark removed what it pulled
	done
fi

# --- 2. podbench ---------------------------------------------------------------------
for r in "${RUNTIMES[@]}"; do
	log "podbench -n $N against $r"
	inns "$BIN/podbench" -endpoint "unix://${SOCK[$r]}" -n "$N" -image "$IMAGE" -log-dir "$TMP/$r/pod-logs" \
		>"$TMP/podbench-$r.out"
	cat "$TMP/podbench-$r.out" >&2
done

# --- 3. runc floor -----------------------------------------------------------------------
# The bundle of a container crid made (same spec, rootfs overlay, pod
# namespaces), run by runc alone: runc create + runc start, as conmon runs them.
log "runc floor, $N iterations after 2 untimed"
read -r _ fpod fctr < <(inns "$BIN/podbench" -endpoint "unix://${SOCK[crid]}" -leave 1 -image "$IMAGE" \
	-log-dir "$TMP/crid/pod-logs" -cgroup-parent /podbench/floor)
cdir=$TMP/crid/state/containers/$fctr
[[ -f $cdir/config.json ]] || { echo "pods.sh: no bundle at $cdir" >&2; exit 1; }
mkdir -p "$TMP/floor" "$FLOOR_ROOT"
FLOOR=()
for ((i = 0; i < N + 2; i++)); do
	b=$TMP/floor/b$i
	mkdir -p "$b"
	jq --arg root "$cdir/rootfs" --arg cg "/crid-bench-floor/f$i" \
		'.root.path = $root | .linux.cgroupsPath = $cg' "$cdir/config.json" >"$b/config.json"
	t0=$EPOCHREALTIME
	inns runc --root "$FLOOR_ROOT" create --bundle "$b" --pid-file "$b/pid" "floor-$i" </dev/null >/dev/null 2>"$b/err" ||
		{ cat "$b/err" >&2; exit 1; }
	inns runc --root "$FLOOR_ROOT" start "floor-$i"
	t1=$EPOCHREALTIME
	((i >= 2)) && FLOOR+=("$(ms_between "$t0" "$t1")")
	runc --root "$FLOOR_ROOT" delete -f "floor-$i"
done
read -r floor_med _ _ < <(stats "${FLOOR[@]}")
log "runc floor median ${floor_med} ms"
crictl_ crid rmp -f "$fpod" >/dev/null

# --- 4. crictl runp + create + start -------------------------------------------------------
cat >"$TMP/ctr.json" <<JSON
{"metadata": {"name": "sleep"}, "image": {"image": "$IMAGE"}, "command": ["sleep", "3600"],
 "log_path": "sleep/0.log", "linux": {"security_context": {"namespace_options": {"pid": 1}}}}
JSON
log "crictl runp+create+start, $NCRICTL rounds after 1 untimed"
for ((i = -1; i < NCRICTL; i++)); do # -1: untimed warm-up
	for ((j = 0; j < 2; j++)); do
		r=${RUNTIMES[(i + 2 + j) % 2]} # alternate who goes first
		mkdir -p "$TMP/$r/crictl-logs/p$i"
		cat >"$TMP/pod.json" <<JSON
{"metadata": {"name": "crictl-$i", "namespace": "default", "uid": "crictl-$r-$i"},
 "log_directory": "$TMP/$r/crictl-logs/p$i", "linux": {"cgroup_parent": "/podbench/crictl-$r-$i",
 "security_context": {"namespace_options": {"pid": 1}}}}
JSON
		t0=$EPOCHREALTIME
		p=$(crictl_ "$r" runp "$TMP/pod.json")
		c=$(crictl_ "$r" create "$p" "$TMP/ctr.json" "$TMP/pod.json")
		crictl_ "$r" start "$c" >/dev/null
		t1=$EPOCHREALTIME
		((i >= 0)) && CRICTL_T[$r]+="$(ms_between "$t0" "$t1") "
		crictl_ "$r" rmp -f "$p" >/dev/null
	done
done

# --- 5. memory per pod -----------------------------------------------------------------------
log "memory: $NMEM pods per runtime"
for r in "${RUNTIMES[@]}"; do
	inns "$BIN/podbench" -endpoint "unix://${SOCK[$r]}" -leave "$NMEM" -image "$IMAGE" \
		-log-dir "$TMP/$r/mem-logs" >"$TMP/mem-$r.pods"
done
sleep 2
# rollup PID...: "PSS_kB RSS_kB" summed over the PIDs' smaps_rollup.
rollup() {
	local p pss=0 rss=0 a b
	for p in "$@"; do
		read -r a b < <(awk '/^Pss:/ { p = $2 } /^Rss:/ { r = $2 } END { print p + 0, r + 0 }' "/proc/$p/smaps_rollup")
		pss=$((pss + a)) rss=$((rss + b))
	done
	echo "$pss $rss"
}
comm_is() { [[ $(cat "/proc/$1/comm" 2>/dev/null) == "$2" ]]; }
CONMONS=() SHIMS=() PAUSES=()
for p in $(procs_under "$TMP/crid/state"); do comm_is "$p" conmon && CONMONS+=("$p"); done
for p in $(procs_under "$TMP/containerd"); do comm_is "$p" containerd-shim && SHIMS+=("$p"); done
for s in "${SHIMS[@]}"; do
	for p in $(pgrep -P "$s"); do comm_is "$p" pause && PAUSES+=("$p"); done
done
((${#CONMONS[@]} == NMEM)) || log "warning: ${#CONMONS[@]} conmons for $NMEM pods"
((${#SHIMS[@]} == NMEM && ${#PAUSES[@]} == NMEM)) || log "warning: ${#SHIMS[@]} shims, ${#PAUSES[@]} pause for $NMEM pods"
read -r mem_crid_pss mem_crid_rss < <(rollup "${CONMONS[@]}")
read -r mem_ctrd_pss mem_ctrd_rss < <(rollup "${SHIMS[@]}" "${PAUSES[@]}")
read -r shim_pss shim_rss < <(rollup "${SHIMS[@]}")
read -r pause_pss pause_rss < <(rollup "${PAUSES[@]}")
# The daemons: nsenter execs them, so the PIDs are theirs.
read -r _ crid_rss < <(rollup "${DPID[crid]}")
read -r _ ctrd_rss < <(rollup "${DPID[containerd]}")
for r in "${RUNTIMES[@]}"; do crictl_ "$r" rmp -fa >/dev/null; done

# --- report --------------------------------------------------------------------------------------
col() { awk -v k="$2" -v f="$3" '$1 == k { print $f }' "$1"; } # col FILE ROWNAME FIELD
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
kb2mb() { awk -v a="$1" -v n="$2" 'BEGIN { printf "%.2f", a / n / 1024 }'; }
row() { printf '| %-40s | %11s | %11s | %6s | %-24s |\n' "$@"; }

echo
echo "date:       $(date -u +%F)"
echo "machine:    $(machine_line)"
echo "crid:       $("$BIN/crid" version 2>&1 | head -1) ($(go version | awk '{ print $3 }')), conmon $(conmon --version | awk 'NR == 1 { print $3 }'), runc $(runc --version | awk 'NR == 1 { print $3 }')"
echo "containerd: $("$CONTAINERD" --version | awk '{ print $3 }')"
echo "crictl:     $("$CRICTL" --version | awk '{ print $3 }')"
echo "podbench:   $N iterations after 2 untimed; runc floor: $N after 2; crictl: $NCRICTL rounds after 1 untimed; memory: $NMEM pods"
echo
row metric crid containerd ratio goal
row "---" "---:" "---:" "---:" "---"
for k in RunPodSandbox CreateContainer StartContainer CreateContainer+Start; do
	a=$(col "$TMP/podbench-crid.out" "$k" 2) b=$(col "$TMP/podbench-containerd.out" "$k" 2)
	goal=""
	[[ $k == RunPodSandbox ]] && goal="crid <= 0.4x containerd"
	row "$k median ms" "$a" "$b" "$(ratio "$a" "$b")" "$goal"
	a=$(col "$TMP/podbench-crid.out" "$k" 3) b=$(col "$TMP/podbench-containerd.out" "$k" 3)
	row "$k p90 ms" "$a" "$b" "$(ratio "$a" "$b")" ""
done
cs_crid=$(col "$TMP/podbench-crid.out" CreateContainer+Start 2)
cs_ctrd=$(col "$TMP/podbench-containerd.out" CreateContainer+Start 2)
row "runc create+start floor median ms" "$floor_med" "$floor_med" "" ""
row "CreateContainer+Start - floor ms" "$(awk -v a="$cs_crid" -v b="$floor_med" 'BEGIN { printf "%.2f", a - b }')" \
	"$(awk -v a="$cs_ctrd" -v b="$floor_med" 'BEGIN { printf "%.2f", a - b }')" "" "crid <= 3 ms"
# shellcheck disable=SC2086 # word splitting wanted
read -r a _ _ < <(stats ${CRICTL_T[crid]})
# shellcheck disable=SC2086
read -r b _ _ < <(stats ${CRICTL_T[containerd]})
row "crictl runp+create+start median ms" "$a" "$b" "$(ratio "$a" "$b")" "crid <= 0.7x containerd"
row "per-pod monitor+infra PSS MB" "$(kb2mb "$mem_crid_pss" "$NMEM")" "$(kb2mb "$mem_ctrd_pss" "$NMEM")" \
	"$(ratio "$mem_crid_pss" "$mem_ctrd_pss")" "crid <= 1 MB"
row "per-pod monitor+infra RSS MB" "$(kb2mb "$mem_crid_rss" "$NMEM")" "$(kb2mb "$mem_ctrd_rss" "$NMEM")" \
	"$(ratio "$mem_crid_rss" "$mem_ctrd_rss")" "crid <= 3 MB"
row "  ctrd shim + pause PSS MB" "" "$(kb2mb "$shim_pss" "$NMEM")+$(kb2mb "$pause_pss" "$NMEM")" "" ""
row "  ctrd shim + pause RSS MB" "" "$(kb2mb "$shim_rss" "$NMEM")+$(kb2mb "$pause_rss" "$NMEM")" "" ""
row "daemon RSS MB ($NMEM pods up)" "$(kb2mb "$crid_rss" 1)" "$(kb2mb "$ctrd_rss" 1)" "$(ratio "$crid_rss" "$ctrd_rss")" ""
if ((CRITEST)); then
	for k in $(awk 'NR > 1 { print $1 }' "$TMP/critest-crid.summary"); do
		a=$(col "$TMP/critest-crid.summary" "$k" 2) b=$(col "$TMP/critest-containerd.summary" "$k" 2)
		row "critest $k median ms" "$a" "$b" "$(ratio "$a" "$b")" ""
	done
fi
echo
echo "crictl runp+create+start ms: crid ${CRICTL_T[crid]}| containerd ${CRICTL_T[containerd]}"
echo "runc floor ms: ${FLOOR[*]}"
echo
# crid's own per-stage durations for the podbench pods (Go durations: 1.2ms, 850µs).
tomsm() { awk '{ v = $1; if (v ~ /µs$/) { sub(/µs$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } print v }'; }
stage() { # stage LABEL FILE FIELD
	local v
	# shellcheck disable=SC2046
	v=$(stats $(cut -d' ' -f"$3" "$2" | tomsm) | awk '{ print $1 }')
	echo "  $1: $v ms"
}
grep 'msg="pod sandbox ready"' "${LOG[crid]}" | grep 'name=podbench-' |
	sed -E 's/.*namespaces=([^ ]+) network=([^ ]+) total=([^ ]+).*/\1 \2 \3/' >"$TMP/stages-pod" || true
grep 'msg="container created"' "${LOG[crid]}" | grep 'name=sleep' |
	sed -E 's/.*spec=([^ ]+) runtime=([^ ]+).*/\1 \2/' >"$TMP/stages-ctr" || true
echo "crid's logged stage medians (all podbench/crictl pods):"
if [[ -s $TMP/stages-pod ]]; then
	stage "pod sandbox: namespaces" "$TMP/stages-pod" 1
	stage "pod sandbox: network" "$TMP/stages-pod" 2
	stage "pod sandbox: total" "$TMP/stages-pod" 3
fi
if [[ -s $TMP/stages-ctr ]]; then
	stage "container created: spec" "$TMP/stages-ctr" 1
	stage "container created: runtime" "$TMP/stages-ctr" 2
fi
