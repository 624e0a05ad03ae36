#!/usr/bin/env bash
# Cold image pull benchmark: crid against Debian's containerd, both over CRI.
#
# Serves docker.io/library/crid-bench:5layers (5 gzip layers, ~105 MB,
# incompressible) from the offline test rig on 127.0.0.1, then pulls it N times
# on each runtime with `crictl pull`, removing the image and waiting until the
# runtime's root is back to its size before the next pull, so that every pull
# is cold. Runtimes take turns in a rotating order. Run as root; see README.md.
#
#   bash bench/pull.sh [-n N] [-k]     (-k: keep the temp dir and logs)
set -euo pipefail

N=5
KEEP=0
while getopts "n:kh" opt; do
	case $opt in
	n) N=$OPTARG ;;
	k) KEEP=1 ;;
	*)
		sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
		exit 2
		;;
	esac
done
[[ $N =~ ^[1-9][0-9]*$ ]] || { echo "pull.sh: -n wants a positive integer" >&2; exit 2; }
[[ $EUID -eq 0 ]] || { echo "pull.sh: must run as root" >&2; exit 1; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
BIN=$REPO/_output/bin
IMAGE=docker.io/library/crid-bench:5layers
CONTAINERD=/usr/bin/containerd
# On the root file system (not tmpfs), like /var/lib/containerd and /var/lib/crid.
TMP=$(mktemp -d /var/tmp/crid-bench.XXXXXX)

PIDS=()     # daemons we started, stopped in reverse order
RUNTIMES=() # names, in start order
declare -A SOCK ROOT BASE LOG TIMES WARM

cleanup() {
	local rc=$?
	set +e
	stop_pids
	# containerd may leave snapshot or temp mounts under its root/state/temp.
	umount_under "$TMP"
	if ((KEEP)); then
		log "kept $TMP"
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

crictl_() { # crictl_ RUNTIME ARGS...
	local s=unix://${SOCK[$1]}
	shift
	"$CRICTL" --config "$TMP/crictl.yaml" --runtime-endpoint "$s" --image-endpoint "$s" \
		--timeout 300s "$@"
}

# usage_bytes DIR: bytes under DIR. Files may vanish during the walk (crid
# renames removed layers to rm-* and deletes them in the background).
usage_bytes() { { du -sxb "$1" 2>/dev/null || true; } | cut -f1; }

# --- binaries -----------------------------------------------------------------
build_bins
find_crictl

# --- registry -------------------------------------------------------------------
HOSTS=$TMP/hosts
log "starting rig --bench"
"$BIN/rig" serve --addr 127.0.0.1:0 --hosts-dir "$HOSTS" --ready-file "$TMP/rig.ready" --bench \
	>"$TMP/rig.log" 2>&1 &
PIDS+=($!)
wait_for test -s "$TMP/rig.ready" || { cat "$TMP/rig.log" >&2; exit 1; }
log "rig at $(cat "$TMP/rig.ready")"

# --- crid, one daemon per max_concurrent_downloads -----------------------------------
for mcd in 3 5; do
	name=crid-mcd$mcd
	d=$TMP/$name
	mkdir -p "$d/root" "$d/state"
	printf '[image]\nmax_concurrent_downloads = %d\n' "$mcd" >"$d/config.toml"
	SOCK[$name]=$d/crid.sock
	ROOT[$name]=$d/root
	LOG[$name]=$d/crid.log
	"$BIN/crid" --config "$d/config.toml" --root "$d/root" --state "$d/state" \
		--listen "unix://${SOCK[$name]}" --registry-config-dir "$HOSTS" --log-level info \
		>"${LOG[$name]}" 2>&1 &
	PIDS+=($!)
	RUNTIMES+=("$name")
	wait_for crictl_ "$name" images || { cat "${LOG[$name]}" >&2; exit 1; }
done

# --- containerd -------------------------------------------------------------------
if [[ -x $CONTAINERD ]]; then
	name=containerd
	d=$TMP/containerd
	mkdir -p "$d/cni/bin" "$d/cni/net.d"
	SOCK[$name]=$d/containerd.sock
	ROOT[$name]=$d/root
	LOG[$name]=$d/containerd.log
	containerd_config "$d" "$HOSTS" "$d/cni/bin" "$d/cni/net.d"
	log "starting containerd"
	"$CONTAINERD" --config "$d/config.toml" >"${LOG[$name]}" 2>&1 &
	PIDS+=($!)
	RUNTIMES+=("$name")
	if ! wait_for crictl_ "$name" images; then
		tail -50 "${LOG[$name]}" >&2
		echo "pull.sh: containerd's CRI plugin did not come up" >&2
		exit 1
	fi
	crictl_ "$name" info >"$d/crictl-info.json"
	grep -q '"snapshotter": "overlayfs"' "$d/crictl-info.json" || {
		echo "pull.sh: unexpected containerd CRI config, see $d/crictl-info.json" >&2
		exit 1
	}
else
	log "no $CONTAINERD: benchmarking crid only"
fi

# --- cold pulls ---------------------------------------------------------------------
for r in "${RUNTIMES[@]}"; do BASE[$r]=$(usage_bytes "${ROOT[$r]}"); TIMES[$r]=""; done

# wait_cold RUNTIME: wait until the root is back to its size before the first
# pull (within 1 MiB of metadata growth): content, snapshots and layers gone.
wait_cold() {
	local r=$1 now
	for _ in $(seq 600); do
		now=$(usage_bytes "${ROOT[$r]}")
		((now - BASE[$r] < 1048576)) && return 0
		sleep 0.1
	done
	echo "pull.sh: $r still holds $((now - BASE[$r])) bytes after rmi" >&2
	du -xb -d3 "${ROOT[$r]}" | sort -n | tail -5 >&2
	return 1
}

# One untimed round first: warms the rig's page cache and each daemon's
# connection set-up, which would otherwise count against whoever goes first.
nrt=${#RUNTIMES[@]}
for r in "${RUNTIMES[@]}"; do
	crictl_ "$r" pull "$IMAGE" >/dev/null
	crictl_ "$r" rmi "$IMAGE" >/dev/null
	wait_cold "$r"
done
for r in "${RUNTIMES[@]}"; do [[ -f ${LOG[$r]} ]] && WARM[$r]=$(wc -l <"${LOG[$r]}"); done
for ((i = 0; i < N; i++)); do
	for ((j = 0; j < nrt; j++)); do
		r=${RUNTIMES[(i + j) % nrt]}
		sync # the previous pull's dirty pages are not this pull's cost
		t0=$(date +%s%N)
		crictl_ "$r" pull "$IMAGE" >/dev/null
		t1=$(date +%s%N)
		secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
		used=$(($(usage_bytes "${ROOT[$r]}") - BASE[$r]))
		TIMES[$r]+="$secs "
		log "iteration $((i + 1))/$N  $r  ${secs}s  (+$((used / 1048576)) MiB on disk)"
		crictl_ "$r" rmi "$IMAGE" >/dev/null
		wait_cold "$r"
	done
done

# --- report ------------------------------------------------------------------------
echo
echo "machine:    $(machine_line)"
echo "crid:       $("$BIN/crid" version 2>&1 | head -1) ($(go version | awk '{ print $3 }'))"
[[ -x $CONTAINERD ]] && echo "containerd: $("$CONTAINERD" --version | awk '{ print $3 }')"
echo "crictl:     $("$CRICTL" --version | awk '{ print $3 }')"
echo "image:      $IMAGE, $N cold pulls per runtime after 1 untimed, crictl pull wall time"
echo
printf '%-16s %8s %8s %8s   %s\n' runtime median min max "all (s)"
declare -A MED
for r in "${RUNTIMES[@]}"; do
	# shellcheck disable=SC2086 # word splitting wanted
	read -r med min max < <(stats ${TIMES[$r]})
	MED[$r]=$med
	printf '%-16s %8s %8s %8s   %s\n' "$r" "$med" "$min" "$max" "${TIMES[$r]}"
done
if [[ -n ${MED[containerd]:-} ]]; then
	echo
	for r in "${RUNTIMES[@]}"; do
		[[ $r == containerd ]] && continue
		awk -v a="${MED[$r]}" -v b="${MED[containerd]}" -v r="$r" \
			'BEGIN { printf "ratio %s / containerd (medians): %.2f   (goal <= 0.70)\n", r, a / b }'
	done
fi
echo
for r in "${RUNTIMES[@]}"; do
	[[ $r == containerd ]] && continue
	echo "$r server-side (\"pulled image\" log): $(tail -n +"$((WARM[$r] + 1))" "${LOG[$r]}" |
		grep -o 'msg="pulled image".*duration=[^ ]*' | sed 's/.*duration=//' | tr '\n' ' ')"
done
