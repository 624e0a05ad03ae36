#!/usr/bin/env bash
# Runs crid's production-node tests in the guest node (test/guest/image.sh):
# Debian 12 with systemd as PID 1, pure cgroup v2 and AppArmor, booted under
# qemu with no network. Everything is built here and shipped on the guest's
# input disk: crid, the end-to-end test binary, the test rig, crictl,
# critest and the kubelet.
#
#   test/guest/run.sh          # the focused leg .ci/run runs (~15 min)
#   test/guest/run.sh critest  # critest's groups (test/critest.sh) and its
#                              # AppArmor specs, with each cgroup driver
#   test/guest/run.sh full     # that and every end-to-end test, with each
#                              # cgroup driver (hours under emulation)
#   test/guest/run.sh e2e REGEX  # the end-to-end tests REGEX matches, with
#                              # the systemd driver (while working on them);
#                              # CRID_E2E_BENCH=1 runs benchmarks among them
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="/usr/local/go/bin:$PATH" GOFLAGS=-buildvcs=false
suite=${1:-focused}
case "$suite" in focused | critest | full) ;; e2e) [ -n "${2:-}" ] || { echo "usage: $0 e2e REGEX"; exit 2; } ;; *) echo "usage: $0 [focused|critest|full|e2e REGEX]"; exit 2 ;; esac

for tool in qemu-system-x86_64 qemu-img debootstrap mkfs.ext4 debugfs; do
	command -v "$tool" >/dev/null || {
		echo "guest: apt-get install qemu-system-x86 qemu-utils debootstrap e2fsprogs"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			qemu-system-x86 qemu-utils debootstrap e2fsprogs >/dev/null
		break
	}
done
[ -x _output/bin/crictl ] && [ -x _output/bin/critest ] && [ -x _output/bin/kubelet ] || bash hack/install-deps.sh

in=$(mktemp -d /var/tmp/crid-guest-in.XXXXXX)
out=${CRID_GUEST_OUT:-_output/guest/$suite}
trap 'rm -rf "$in"' EXIT
rm -rf "$out" && mkdir -p "$out"

echo "guest: building the binaries"
bin="$in/bin"
mkdir -p "$bin/cni" "$in/src/test" "$in/src/_output/bin"
go build -o "$bin/crid" ./cmd/crid
go build -tags crashpoints -o "$bin/crid-crashpoints" ./cmd/crid
go build -o "$bin/rig" ./test/rig/cmd/rig
# The rig's in-image helper, which it otherwise compiles when it starts.
CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -buildid=" -o "$bin/rig-guest" ./test/rig/images/guest
go build -o "$bin/cni/cnihang" ./test/e2e/cnihang
go build -o "$bin/nriplugin" ./test/e2e/nriplugin
go test -c -o "$bin/e2e.test" ./test/e2e
cp _output/bin/crictl _output/bin/critest "$bin/"
# runc 1.5 for the runc-userns handler (install-deps.sh builds it against
# Debian 12's libseccomp, which the guest has too): node.sh installs it.
cp /usr/local/libexec/crid/runc "$bin/runc-userns"
# The tree the tests read: the e2e tests run from src/test/e2e, critest.sh
# from src/ with its binaries in src/_output/bin.
cp -r hack "$in/src/"
cp -r test/e2e test/critest.sh "$in/src/test/"
ln "$bin/crid" "$bin/rig" "$bin/crictl" "$bin/critest" "$in/src/_output/bin/"
cp _output/bin/kubelet "$in/src/_output/bin/"
cp test/guest/node.sh "$in/run.sh"
echo "$suite" >"$in/suite"
[ "$suite" = e2e ] && echo "$2" >"$in/e2e-run"
[ -n "${CRID_E2E_BENCH:-}" ] && echo "CRID_E2E_BENCH=$CRID_E2E_BENCH" >"$in/e2e-env"

case "$suite" in focused | e2e) timeout=2400 ;; critest) timeout=5400 ;; full) timeout=14400 ;; esac
rc=0
bash test/guest/boot.sh "$in" "$out" "$timeout" || rc=$?
[ -f "$out/log" ] && grep -E '^(==|--) ' "$out/log" || true
if [ "$rc" != 0 ]; then
	echo "guest: FAILED ($rc); the guest's log: $out/log, its journal: $out/journal, its console: $out/console.log"
	[ -f "$out/log" ] && tail -n 80 "$out/log"
	exit "$rc"
fi
echo "guest: all passed"
