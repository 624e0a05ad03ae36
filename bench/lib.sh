# Shared helpers of the bench/*.sh scripts; sourced, not run.
#
# The caller sets TMP (its temp dir under /var/tmp) and the array PIDS (the
# daemons it started, stopped in reverse order by stop_pids), and CRICTL after
# find_crictl.

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

# wait_for CMD... : retry CMD for up to 60 s.
wait_for() {
	for _ in $(seq 600); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

# stop_pids: SIGTERM each of PIDS, newest first, SIGKILL after 10 s.
stop_pids() {
	local i pid
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		pid=${PIDS[i]}
		kill -TERM "$pid" 2>/dev/null || continue
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
}

# umount_under DIR: unmount everything mounted at or below DIR, deepest first.
umount_under() {
	awk -v p="$1/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m"
	done
}

# stats VALUE...: prints "median min max".
stats() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		      printf "%.3f %.3f %.3f\n", m, v[1], v[NR] }'
}

# build_bins: crid and rig into $BIN.
build_bins() {
	mkdir -p "$BIN"
	log "building crid and rig"
	(cd "$REPO" && go build -o "$BIN/crid" ./cmd/crid && go build -o "$BIN/rig" ./test/rig/cmd/rig)
}

# find_crictl: sets CRICTL, installing crictl v1.37.0 under $TMP if needed.
find_crictl() {
	CRICTL=$BIN/crictl
	if [[ ! -x $CRICTL ]]; then
		log "installing crictl v1.37.0"
		GOBIN=$TMP/gobin go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0
		CRICTL=$TMP/gobin/crictl
	fi
	touch "$TMP/crictl.yaml" # an empty config: no /etc/crictl.yaml lookup and warning
}

# machine_line: one line describing this machine, for the reports.
machine_line() {
	echo "$(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(free -g | awk '/Mem:/ { print $2 }') GiB RAM, kernel $(uname -r), fs $(df --output=fstype "$TMP" | tail -1)"
}

# containerd_config DIR HOSTS CNI_BIN_DIR CNI_CONF_DIR > DIR/config.toml
#
# Schema version 2 (containerd 1.6, Debian 12), everything under DIR (root,
# state, temp, socket DIR/containerd.sock), the CRI plugin with
# registry.config_path = HOSTS, overlayfs, cgroupfs, restrict_oom_score_adj,
# sandbox image registry.k8s.io/pause:3.10 (the rig serves it). Snapshotters
# this VM cannot run are disabled so they do not log errors; none of them
# blocks start-up.
containerd_config() {
	local d=$1 hosts=$2 cnibin=$3 cniconf=$4
	mkdir -p "$d/root" "$d/state" "$d/tmp" "$d/opt"
	cat >"$d/config.toml" <<EOT
version = 2
root = "$d/root"
state = "$d/state"
temp = "$d/tmp"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "$d/containerd.sock"

[ttrpc]
  address = "$d/containerd.sock.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$d/opt"

  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.10"
    max_concurrent_downloads = 3
    restrict_oom_score_adj = true
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    systemd_cgroup = false

    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      discard_unpacked_layers = false

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "$cnibin"
      conf_dir = "$cniconf"

    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "$hosts"
EOT
}
