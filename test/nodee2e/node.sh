#!/usr/bin/env bash
# The node that test/nodee2e/run.sh runs the suite on; run.sh starts this in
# the namespaces it made (network, mount, cgroup) with WORK, RUNTIME,
# SELECTION, BIN, REPO, NODEE2E_FOCUS and NODEE2E_PROCS set, and ends every
# process of it by PID when done.
set -euo pipefail
cd "$WORK"

# Mounts made in this namespace are shared among its own mounts (the kubelet
# and the runtime's bidirectional mounts need that) and never reach the host.
mount --make-rshared /

# The cgroup file systems, mounted again so that they show this cgroup
# namespace's root, as a node's do. Pure cgroup v2 has one, at
# /sys/fs/cgroup; otherwise a tmpfs there holds one per hierarchy.
cgmounts=$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i+1) ~ /^cgroup2?$/) print $5, $(i+1), $(i+3); break } }' /proc/self/mountinfo)
if ! grep -q '^/sys/fs/cgroup cgroup2 ' <<<"$cgmounts"; then
	mount -t tmpfs -o mode=0755 tmpfs /sys/fs/cgroup
fi
while read -r mnt fstype opts; do
	mkdir -p "$mnt"
	mount -t "$fstype" -o "$opts" "$fstype" "$mnt"
done <<<"$cgmounts"

# Network namespaces the runtime pins (containerd: /run/netns) stay here.
mount -t tmpfs -o mode=0755 tmpfs /run/netns

# The kubelet's fixed paths, on scratch dirs (run.sh made the mount points).
for d in /var/lib/kubelet /var/log/pods /var/log/containers; do
	mkdir -p "$WORK/host$d"
	mount --bind "$WORK/host$d" "$d"
done

# The kubelet looks up the node's name; no DNS server answers here, so
# /etc/hosts has it (the address is run.sh's, on the default route).
{ cat /etc/hosts; echo "$NODE_IP $NODE_NAME"; } >"$WORK/etc-hosts"
mount --bind "$WORK/etc-hosts" /etc/hosts

# The suite runs the kubelet with systemd-run when it finds one on PATH; on
# a host that systemd did not boot, hide it (in this namespace only).
if [ ! -d /run/systemd/system ] && [ -e /usr/bin/systemd-run ]; then
	touch "$WORK/no-systemd-run"
	mount --bind "$WORK/no-systemd-run" /usr/bin/systemd-run
fi

# The suite writes the kubelet's configuration beside its own binary and
# starts the kubelet found there: both are linked into a scratch dir.
mkdir -p "$WORK/bin"
for b in e2e_node.test kubelet; do
	ln "$BIN/$b" "$WORK/bin/$b" 2>/dev/null || cp "$BIN/$b" "$WORK/bin/$b"
done

wait_for() { # wait_for FILE WHAT PID
	for _ in $(seq 600); do
		[ -e "$1" ] && return 0
		kill -0 "$3" 2>/dev/null || { echo "node.sh: $2 exited"; tail -n 30 "$4"; return 1; }
		sleep 0.1
	done
	echo "node.sh: $2 not ready after 60s"
	return 1
}

"$BIN/rig" serve --addr 127.0.0.1:5000 --hosts-dir "$WORK/hosts" --agnhost "$REPO/_output/agnhost" \
	--ready-file "$WORK/rig.ready" >"$WORK/rig.log" 2>&1 &
wait_for "$WORK/rig.ready" rig $! "$WORK/rig.log"

mkdir -p "$WORK/net.d"
cat >"$WORK/net.d/10-nodee2e.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "nodee2e",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$WORK/ipam", "ranges": [[{"subnet": "10.88.0.0/16"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
  ]
}
JSON

# The runtime runs in a cgroup of its own, which the kubelet reports as the
# "runtime" system container (--runtime-cgroups).
in_runtime_cgroup() {
	local m
	for m in $(cut -d' ' -f1 <<<"$cgmounts"); do
		mkdir -p "$m/runtime"
		if [ -e "$m/runtime/cpuset.cpus" ]; then # v1 cpuset: no task before CPUs and nodes
			cat "$m/cpuset.cpus" >"$m/runtime/cpuset.cpus"
			cat "$m/cpuset.mems" >"$m/runtime/cpuset.mems"
		fi
		echo "$BASHPID" >"$m/runtime/cgroup.procs"
	done
	exec "$@"
}

# The RuntimeClass specs run pods with handler "test-handler": runc, as
# upstream's node e2e jobs configure their runtimes.
case $RUNTIME in
crid)
	cat >"$WORK/crid.toml" <<'TOML'
[runtimes.test-handler]
path = "runc"
TOML
	sock=$WORK/crid.sock
	in_runtime_cgroup "$BIN/crid" --config "$WORK/crid.toml" --root "$WORK/root" --state "$WORK/state" --listen "unix://$sock" \
		--registry-config-dir "$WORK/hosts" --cni-conf-dir "$WORK/net.d" --nri-socket "$WORK/nri.sock" \
		--cgroup-driver cgroupfs ${NODEE2E_CRID_ARGS:-} >"$WORK/runtime.log" 2>&1 &
	;;
containerd)
	# Debian's containerd 1.6, configured as bench/ runs it (lib.sh, in a
	# subshell: it defines helpers of its own).
	# shellcheck source=../../bench/lib.sh
	# Its socket is where the kubelet's cAdvisor looks for it, for the
	# stats of its containers: /run/containerd, here a scratch dir.
	(source "$REPO/bench/lib.sh" && containerd_config "$WORK/containerd" "$WORK/hosts" /usr/lib/cni "$WORK/net.d")
	mkdir -p /run/containerd "$WORK/host/run/containerd"
	mount --bind "$WORK/host/run/containerd" /run/containerd
	sed -i 's#"'"$WORK"'/containerd/containerd.sock#"/run/containerd/containerd.sock#' "$WORK/containerd/config.toml"
	cat >>"$WORK/containerd/config.toml" <<'TOML'

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.test-handler]
        runtime_type = "io.containerd.runc.v2"
TOML
	sock=/run/containerd/containerd.sock
	in_runtime_cgroup /usr/bin/containerd --config "$WORK/containerd/config.toml" >"$WORK/runtime.log" 2>&1 &
	;;
esac
wait_for "$sock" "$RUNTIME" $! "$WORK/runtime.log"

# The selection: specs labelled NodeConformance, without the tags CI jobs
# leave out, and within those the CI subset's groups (subset.txt) unless
# "full", less the skips (skip.txt). The list files hold one regular
# expression per line, with "#" comments; skip.txt gives each entry's reason
# after " ## ".
patterns() { sed -e 's/ ## .*//' -e '/^#/d' -e '/^[[:space:]]*$/d' "$1" | paste -sd'|'; }
skip='\[Serial\]|\[Slow\]|\[Flaky\]|\[Disruptive\]|\[Alpha\]'
listed=$(patterns "$REPO/test/nodee2e/skip.txt")
skip="$skip${listed:+|$listed}"
focus=$NODEE2E_FOCUS
if [ -z "$focus" ] && [ "$SELECTION" = subset ]; then
	focus=$(patterns "$REPO/test/nodee2e/subset.txt")
fi
timeout=60m
[ "$SELECTION" = full ] || timeout=25m

mkdir -p "$WORK/report"
set +e
"$BIN/ginkgo" --procs="$NODEE2E_PROCS" --timeout="$timeout" --no-color --output-dir="$WORK/report" \
	--json-report=report.json --label-filter=NodeConformance ${focus:+--focus="$focus"} --skip="$skip" \
	"$WORK/bin/e2e_node.test" -- \
	--container-runtime-endpoint="unix://$sock" --image-service-endpoint="unix://$sock" \
	--prepull-images=false --node-name="$NODE_NAME" --report-dir="$WORK/report" \
	--feature-gates=PodAndContainerStatsFromCRI=true \
	--kubelet-flags="--cgroup-driver=cgroupfs --cgroups-per-qos=true --cgroup-root=/ --fail-cgroupv1=false --runtime-cgroups=/runtime" \
	>"$WORK/suite.log" 2>&1
rc=$?
set -e
exit $rc
