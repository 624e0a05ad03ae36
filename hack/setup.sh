#!/usr/bin/env bash
# Sets up a fresh Debian machine (as root) and runs crid with its defaults:
# installs what crid needs, builds it to /usr/local/bin, starts the offline
# test registry on 127.0.0.1:5000 with mirror files in crid's default
# registry config dir (/etc/crid/certs.d), starts crid, pulls an image and
# lists it with crictl. Safe to run again: running daemons are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH" GOFLAGS=-buildvcs=false

bash hack/install-deps.sh
go build -o /usr/local/bin/crid ./cmd/crid
go build -o _output/bin/rig ./test/rig/cmd/rig
install -m 0755 _output/bin/crictl /usr/local/bin/crictl
[ -e /etc/crictl.yaml ] || cat >/etc/crictl.yaml <<'YAML'
runtime-endpoint: unix:///run/crid/crid.sock
image-endpoint: unix:///run/crid/crid.sock
timeout: 60
YAML

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
echo
echo "crid is running (pid $(cat /run/crid/crid.pid), log /var/log/crid/crid.log)."
echo "Stop it with: kill \$(cat /run/crid/crid.pid) \$(cat /run/crid/rig.pid)"
