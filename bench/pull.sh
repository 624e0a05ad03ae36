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
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

parse_n_k 5 "$@"
bench_init crid-bench
IMAGE=docker.io/library/crid-bench:5layers
declare -A ROOT BASE TIMES WARM

# usage_bytes DIR: bytes under DIR. Files may vanish during the walk (crid
# renames removed layers to rm-* and deletes them in the background).
usage_bytes() { { du -sxb "$1" 2>/dev/null || true; } | cut -f1; }

# --- binaries -----------------------------------------------------------------
build_bins
find_crictl

# --- registry -------------------------------------------------------------------
start_rig --bench
log "rig at $(cat "$TMP/rig.ready")"

# --- crid, one daemon per max_concurrent_downloads -----------------------------------
for mcd in 3 5; do
	name=crid-mcd$mcd
	mkdir -p "$TMP/$name"
	printf '[image]\nmax_concurrent_downloads = %d\n' "$mcd" >"$TMP/$name/config.toml"
	ROOT[$name]=$TMP/$name/root
	start_crid "$name" --config "$TMP/$name/config.toml"
done

# --- containerd -------------------------------------------------------------------
if [[ -x $CONTAINERD ]]; then
	d=$TMP/containerd
	mkdir -p "$d/cni/bin" "$d/cni/net.d"
	ROOT[containerd]=$d/root
	start_containerd "$d/cni/bin" "$d/cni/net.d"
	crictl_ containerd info >"$d/crictl-info.json"
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
