#!/usr/bin/env bash
# Builds what test/nodee2e/run.sh needs into _output/bin, from the Go module
# proxy and this module's pins (go.mod): the node e2e suite's test binary
# (e2e_node.test), the ginkgo CLI that runs it in parallel processes, and
# agnhost (into _output/agnhost), which the test rig packs into the suite's
# agnhost images. The
# kubelet comes from hack/install-deps.sh (test/kubelet, the same release):
# the suite starts the one next to its own binary. Each is rebuilt only when
# missing or older than go.mod.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="/usr/local/go/bin:$PATH" GOFLAGS=-buildvcs=false
BIN=$(cd ../.. && pwd)/_output/bin
mkdir -p "$BIN"

stale() { [ ! -x "$1" ] || [ go.mod -nt "$1" ] || [ go.sum -nt "$1" ]; }

if stale "$BIN/e2e_node.test"; then
	echo "nodee2e: building e2e_node.test (a few minutes on a cold build cache)"
	go test -c -o "$BIN/e2e_node.test" k8s.io/kubernetes/test/e2e_node
fi
if stale "$BIN/ginkgo"; then
	go build -o "$BIN/ginkgo" github.com/onsi/ginkgo/v2/ginkgo
fi
# agnhost and upstream's TLS pair for its HTTPS servers, in the dir the
# rig's --agnhost takes. Linked against this host's glibc, which the rig
# copies into the busybox stand-in the agnhost image is built on; built as
# e2e_node.test is (cgo), it shares that build's cache.
AGNHOST=$(dirname "$BIN")/agnhost
mkdir -p "$AGNHOST"
if stale "$AGNHOST/agnhost"; then
	go build -o "$AGNHOST/agnhost" k8s.io/kubernetes/test/images/agnhost
	src=$(go list -m -f '{{.Dir}}' k8s.io/kubernetes)/test/images/agnhost/porter
	install -m 0644 "$src/localhost.crt" "$src/localhost.key" "$AGNHOST/"
fi
[ -x "$BIN/kubelet" ] || { echo "nodee2e: $BIN/kubelet is missing: run hack/install-deps.sh"; exit 1; }
