# Shared helpers of the bench/*.sh scripts; sourced, not run, as the first
# thing after `set -euo pipefail` (usage needs the script's header comment:
# lines 2 up to the first line not starting with #).
#
# Sourcing sets REPO, BIN, SCRIPT (the script's file name, for messages),
# CONTAINERD, and the empty PIDS (the daemons started, stopped in reverse
# order by stop_pids), RUNTIMES (runtime names in start order), CLEANUP_HOOKS
# (commands cleanup runs once the pods are gone, before the daemons stop),
# SOCK, LOG and DPID (per runtime: CRI socket, log file, daemon PID).
# bench_init makes TMP and installs cleanup; netns_init adds the network
# namespace NS; find_crictl sets CRICTL.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$REPO/_output/bin
SCRIPT=${0##*/}
CONTAINERD=/usr/bin/containerd
PIDS=()
RUNTIMES=()
CLEANUP_HOOKS=()
NS=""
NSPATH=""
NSENTER=() # the command prefix that enters $NS; empty without one
declare -A SOCK LOG DPID
declare -A SUBNET=([crid]=10.88.0.0/16 [containerd]=10.89.0.0/16)
declare -A BRIDGE=([crid]=crid0 [containerd]=ctrd0)

# usage: print the script's header comment as help and exit 2.
usage() {
	awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'
	exit 2
}

# want_posint MESSAGE VALUE...: exit 2 with "$SCRIPT: MESSAGE" unless every
# VALUE is a positive integer.
want_posint() {
	local msg=$1 v
	shift
	for v in "$@"; do
		[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "$SCRIPT: $msg" >&2; exit 2; }
	done
}

# parse_n_k DEFAULT ARG...: the options of the scripts that take only -n N
# (default DEFAULT, a positive integer) and -k; sets N and KEEP.
parse_n_k() {
	local opt OPTIND=1
	N=$1
	KEEP=0
	shift
	while getopts "n:kh" opt; do
		case $opt in
		n) N=$OPTARG ;;
		k) KEEP=1 ;;
		*) usage ;;
		esac
	done
	want_posint "-n wants a positive integer" "$N"
}

# bench_init TMPNAME: checks for root, makes TMP=/var/tmp/TMPNAME.XXXXXX (on
# the root file system, not tmpfs, like /var/lib/containerd and
# /var/lib/crid) and installs cleanup on exit.
bench_init() {
	[[ $EUID -eq 0 ]] || { echo "$SCRIPT: must run as root" >&2; exit 1; }
	TMP=$(mktemp -d "/var/tmp/$1.XXXXXX")
	trap cleanup EXIT
	trap 'exit 130' INT TERM
}

# netns_init "CGROUP NAMES": after bench_init, for scripts that run crid and
# containerd inside their own network namespace. Records the top-level
# cgroups of those names and the network namespaces that exist already, so
# that cleanup removes only what this run made; only then sets NS, which
# arms that part of cleanup.
netns_init() {
	[[ -x $CONTAINERD ]] || { echo "$SCRIPT: needs $CONTAINERD" >&2; exit 1; }
	CG_NAMES=$1
	CG_BEFORE=$(cg_list)
	NETNS_BEFORE=$(ls /run/netns 2>/dev/null || true)
	NS=crid-bench-$$
	NSPATH=/run/netns/$NS
	NSENTER=(nsenter --net="$NSPATH")
}

# cg_list: the top-level cgroups named in CG_NAMES, in every hierarchy.
cg_list() {
	local n
	for n in $CG_NAMES; do ls -d /sys/fs/cgroup/*/"$n" 2>/dev/null || true; done
}

# inns CMD...: CMD in $NS (if any). Daemons are started with "${NSENTER[@]}"
# itself, not this function, so that $! is the daemon's PID (nsenter execs
# it) and not a subshell's.
inns() { "${NSENTER[@]}" "$@"; }

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

# cleanup (the EXIT trap): removes every pod of the runtimes still up, runs
# CLEANUP_HOOKS, stops PIDS, kills by PID whatever else names $TMP/ (a conmon
# or shim that outlived its daemon), unmounts what is left under $TMP; with
# NS, also the network namespaces, cgroups and host iptables rules this run
# made. Removes TMP unless KEEP.
cleanup() {
	local rc=$? r h pid c n t ids sub line
	set +e
	trap - INT TERM
	for r in "${RUNTIMES[@]}"; do
		[[ -n ${DPID[$r]:-} ]] && kill -0 "${DPID[$r]}" 2>/dev/null && crictl_ "$r" rmp -fa >/dev/null 2>&1
	done
	for h in "${CLEANUP_HOOKS[@]}"; do $h; done
	stop_pids
	for pid in $(procs_under "$TMP"); do kill -KILL "$pid" 2>/dev/null; done
	# containerd may leave snapshot or temp mounts under its root/state/temp.
	umount_under "$TMP"
	if [[ -n $NS ]]; then
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
	fi
	if ((KEEP)); then
		log "kept $TMP"
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}

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

# build_bins [PKG...]: crid, rig and each PKG (./bench/...) into $BIN, the
# latter named after the package's directory.
build_bins() {
	local p
	mkdir -p "$BIN"
	log "building crid and rig${*:+ and ${*##*/}}"
	(cd "$REPO" && go build -o "$BIN/crid" ./cmd/crid && go build -o "$BIN/rig" ./test/rig/cmd/rig)
	for p in "$@"; do
		(cd "$REPO" && go build -o "$BIN/${p##*/}" "$p")
	done
}

# ms_between T0 T1: milliseconds from T0 to T1 ($EPOCHREALTIME values), "%.2f".
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) * 1000 }'; }

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

# start_rig [ARG...]: the rig (in $NS if any) on a free loopback port, with
# ARGs, writing the hosts.toml mirror directory HOSTS=$TMP/hosts.
start_rig() {
	HOSTS=$TMP/hosts
	log "starting rig${*:+ $*}${NS:+ in netns $NS}"
	"${NSENTER[@]}" "$BIN/rig" serve --addr 127.0.0.1:0 --hosts-dir "$HOSTS" --ready-file "$TMP/rig.ready" "$@" \
		>"$TMP/rig.log" 2>&1 &
	PIDS+=($!)
	wait_for test -s "$TMP/rig.ready" || { cat "$TMP/rig.log" >&2; exit 1; }
}

# start_crid NAME [ARG...]: a crid daemon (in $NS if any) as runtime NAME,
# root, state, socket and log under $TMP/NAME, pulling through HOSTS, with
# ARGs; waits until its CRI answers.
start_crid() {
	local name=$1 d=$TMP/$1
	shift
	mkdir -p "$d/root" "$d/state"
	SOCK[$name]=$d/crid.sock
	LOG[$name]=$d/crid.log
	log "starting $name"
	"${NSENTER[@]}" "$BIN/crid" --root "$d/root" --state "$d/state" --listen "unix://${SOCK[$name]}" \
		--registry-config-dir "$HOSTS" --nri-socket "$d/nri.sock" "$@" --log-level info >"${LOG[$name]}" 2>&1 &
	DPID[$name]=$!
	PIDS+=($!)
	RUNTIMES+=("$name")
	wait_for crictl_ "$name" images || { cat "${LOG[$name]}" >&2; exit 1; }
}

# start_containerd CNI_BIN_DIR CNI_CONF_DIR: containerd (in $NS if any) as
# runtime "containerd" under $TMP/containerd (containerd_config); waits until
# its CRI plugin answers.
start_containerd() {
	local d=$TMP/containerd
	containerd_config "$d" "$HOSTS" "$1" "$2"
	SOCK[containerd]=$d/containerd.sock
	LOG[containerd]=$d/containerd.log
	log "starting containerd"
	"${NSENTER[@]}" "$CONTAINERD" --config "$d/config.toml" >"${LOG[containerd]}" 2>&1 &
	DPID[containerd]=$!
	PIDS+=($!)
	RUNTIMES+=(containerd)
	if ! wait_for crictl_ containerd images; then
		tail -50 "${LOG[containerd]}" >&2
		echo "$SCRIPT: containerd's CRI plugin did not come up" >&2
		exit 1
	fi
}

# conflist RUNTIME DIR: DIR/10-bench.conflist, a bridge network of its own
# for RUNTIME (BRIDGE, SUBNET; host-local IPAM under $TMP/RUNTIME/ipam) and
# portmap.
conflist() {
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

# start_in_netns: after netns_init and find_crictl: NS with its loopback up,
# the rig in it, then crid and containerd (runtimes "crid" and "containerd"),
# each on its own CNI bridge (conflist; containerd 1.6 needs a pod interface
# in the CNI result).
start_in_netns() {
	ip netns add "$NS"
	inns ip link set lo up
	start_rig
	conflist crid "$TMP/crid/net.d"
	start_crid crid --cni-conf-dir "$TMP/crid/net.d"
	conflist containerd "$TMP/containerd/net.d"
	start_containerd /usr/lib/cni "$TMP/containerd/net.d"
}

# pull_images RUNTIME IMAGE...: each IMAGE into RUNTIME.
pull_images() {
	local r=$1 i
	shift
	for i in "$@"; do crictl_ "$r" pull "$i" >/dev/null; done
}
