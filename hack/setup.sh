#!/usr/bin/env bash
# Sets up a fresh Debian machine (as root) and runs crid with its defaults:
# installs what crid needs, builds it to /usr/local/bin, installs a default
# CNI bridge network if /etc/cni/net.d has none, starts the offline test
# registry on 127.0.0.1:5000 with mirror files in crid's default registry
# config dir (/etc/crid/certs.d), starts crid, and runs a pod with one
# container in it (hack/examples). Safe to run again: running daemons and
# the pod are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH" GOFLAGS=-buildvcs=false

bash hack/install-deps.sh --runtime
go build -o /usr/local/bin/crid ./cmd/crid
go build -o _output/bin/rig ./test/rig/cmd/rig
install -m 0755 _output/bin/crictl /usr/local/bin/crictl
[ -e /etc/crictl.yaml ] || cat >/etc/crictl.yaml <<'YAML'
runtime-endpoint: unix:///run/crid/crid.sock
image-endpoint: unix:///run/crid/crid.sock
timeout: 60
YAML

if ! ls /etc/cni/net.d/*.conflist /etc/cni/net.d/*.conf >/dev/null 2>&1; then
	install -D -m 0644 hack/cni/10-crid-bridge.conflist /etc/cni/net.d/10-crid-bridge.conflist
fi

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
mkdir -p /run/crid /var/log/crid
if ! alive /run/crid/rig.pid; then
	rm -f /run/crid/rig.ready
	setsid _output/bin/rig serve --addr 127.0.0.1:5000 --hosts-dir /etc/crid/certs.d \
		--ready-file /run/crid/rig.ready >/var/log/crid/rig.log 2>&1 </dev/null &
	echo $! >/run/crid/rig.pid
	for _ in $(seq 600); do [ -e /run/crid/rig.ready ] && break; sleep 0.1; done
fi
if ! alive /run/crid/crid.pid; then
	setsid crid >/var/log/crid/crid.log 2>&1 </dev/null &
	echo $! >/run/crid/crid.pid
	for _ in $(seq 100); do [ -S /run/crid/crid.sock ] && break; sleep 0.1; done
fi

crictl version
crictl pull busybox
crictl images
if [ -z "$(crictl pods -q --label app=hello --state ready)" ]; then
	pod=$(crictl runp hack/examples/pod.json)
	ctr=$(crictl create "$pod" hack/examples/container.json hack/examples/pod.json)
	crictl start "$ctr" >/dev/null
	sleep 1
fi
crictl pods
crictl ps
crictl logs "$(crictl ps -q --label app=hello | head -n1)"
echo
echo "crid is running (pid $(cat /run/crid/crid.pid), log /var/log/crid/crid.log)."
echo "Remove the pod with: crictl rmp -f \$(crictl pods -q --label app=hello)"
echo "Stop crid with: kill \$(cat /run/crid/crid.pid) \$(cat /run/crid/rig.pid)  (containers keep running)"
