#!/usr/bin/env bash
# Runs the CRI validation suite (critest) against a real crid, offline.
#
# critest pulls images by their upstream names, and its host-network specs
# listen on all addresses: so the test rig's registry, crid and critest all
# run inside a network namespace made here and deleted on exit; crid's
# registry configuration sends the upstream registries to the rig. They
# enter it with nsenter, not `ip netns exec`: that one also makes a mount
# namespace with a fresh /sys, which hides the cgroup mounts runc needs and
# the host mounts the propagation specs share.
#
#   test/critest.sh                       # the groups crid implements
#   CRITEST_FOCUS='Image Manager' test/critest.sh
#   CRID_CGROUP_DRIVER=systemd test/critest.sh   # default: crid's choice
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/_output/bin"

# The groups crid implements (Streaming: exec, attach and port-forward, with
# and without TTY, host network included; AppArmor, whose specs skip
# themselves on a host without it; Image Volume; NRI, whose test plugins
# connect to crid's NRI socket in $work). Skipped, each for a reason:
# - test-image-digest pins an upstream digest (sha256:9700f9a2…) that no
#   offline build can reproduce;
# - user namespaces here: Debian's runc, the default handler, cannot idmap
#   mounts; the UserNamespaces group runs after the others with the
#   runc-userns handler (runc 1.5, which hack/install-deps.sh builds), when
#   that is installed (CRITEST_USERNS=required: it must be).
FOCUS=${CRITEST_FOCUS:-'\[k8s.io\] (PodSandbox|Container|Container Mount Propagation|Container Mount Readonly|Container OOM|Idempotence|Image Consistency|Image Identifier Consistency|Image Manager|Image Volume|Multiple Containers \[Conformance\]|Networking|Runtime info|Security Context|Streaming|AppArmor|NRI) '}
SKIP=${CRITEST_SKIP:-'public image with digest should be pulled and removed|UserNamespaces'}

work=$(mktemp -d /tmp/crid-critest.XXXXXX)
# Containers in a user namespace are nobody on the host: runc, as their
# root, must traverse the state dir to their rootfs (as /run/crid is 0711).
chmod 0711 "$work"
ns="crid-critest-$$"
pids=()
cleanup() {
	local rc=$?
	# Containers outlive crid (their conmon is not crid's child): remove
	# whatever a failed spec left while crid still runs.
	if [ -S "$work/crid.sock" ]; then
		nsenter --net="/run/netns/$ns" "$BIN/crictl" --runtime-endpoint "unix://$work/crid.sock" rmp -fa >/dev/null 2>&1 || true
	fi
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	if [ $rc -ne 0 ]; then
		echo "--- crid log (tail)"; tail -n 50 "$work/crid.log" || true
		echo "--- rig log (tail)"; tail -n 20 "$work/rig.log" || true
	fi
	ip netns delete "$ns" 2>/dev/null || true
	# Anything still mounted under $work (a crash mid-test) is unmounted first.
	{ grep -o " $work[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
	rm -rf "$work"
	# The default cgroup parent of pods without one, if nothing else uses it.
	rmdir /sys/fs/cgroup/*/crid /sys/fs/cgroup/unified/crid 2>/dev/null || true
	exit $rc
}
trap cleanup EXIT

wait_for() { # wait_for FILE WHAT PID
	for _ in $(seq 300); do
		[ -e "$1" ] && return 0
		kill -0 "$3" 2>/dev/null || { echo "critest.sh: $2 exited"; return 1; }
		sleep 0.1
	done
	echo "critest.sh: $2 not ready after 30s"; return 1
}

ip netns add "$ns"
ip netns exec "$ns" ip link set lo up

nsenter --net="/run/netns/$ns" "$BIN/rig" serve --addr 127.0.0.1:5000 --hosts-dir "$work/hosts" \
	--ready-file "$work/rig.ready" >"$work/rig.log" 2>&1 &
pids+=($!)
wait_for "$work/rig.ready" rig "${pids[-1]}"

# The pod network: a bridge inside this network namespace, IPAM state in $work.
mkdir -p "$work/net.d"
cat >"$work/net.d/10-critest.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "critest",
  "plugins": [
    {"type": "bridge", "bridge": "crid0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$work/ipam", "ranges": [[{"subnet": "10.88.0.0/16"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
  ]
}
JSON

# NRI on its own socket. The sync specs hold a plugin's Synchronize open
# for 2 seconds while containers are created: the request timeout must
# outlast it (containerd's default, 2s, would drop the plugin).
cat >"$work/crid.toml" <<TOML
[nri]
socket_path = "$work/nri.sock"
plugin_path = "$work/nri-plugins"
plugin_config_path = "$work/nri-conf.d"
plugin_request_timeout = "10s"
TOML

sock="$work/crid.sock"
nsenter --net="/run/netns/$ns" "$BIN/crid" --config "$work/crid.toml" --root "$work/root" --state "$work/state" --listen "unix://$sock" \
	--registry-config-dir "$work/hosts" --cni-conf-dir "$work/net.d" \
	${CRID_CGROUP_DRIVER:+--cgroup-driver "$CRID_CGROUP_DRIVER"} >"$work/crid.log" 2>&1 &
pids+=($!)
wait_for "$sock" crid "${pids[-1]}"

critest() {
	nsenter --net="/run/netns/$ns" "$BIN/critest" --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" \
		-nri-socket "$work/nri.sock" -ginkgo.no-color "$@"
}
critest -ginkgo.focus="$FOCUS" -ginkgo.skip="$SKIP" "$@"

if [ -z "${CRITEST_FOCUS:-}" ]; then
	if [ -x /usr/local/libexec/crid/runc ]; then
		echo "== critest UserNamespaces, runtime handler runc-userns"
		critest -runtime-handler=runc-userns -ginkgo.focus='UserNamespaces' "$@"
	elif [ "${CRITEST_USERNS:-}" = required ]; then
		echo "critest.sh: /usr/local/libexec/crid/runc (handler runc-userns) is missing: run hack/install-deps.sh"
		exit 1
	else
		echo "critest.sh: UserNamespaces not run: no runc-userns handler (/usr/local/libexec/crid/runc)"
	fi
fi
