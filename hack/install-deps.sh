#!/usr/bin/env bash
# Installs what crid and its tests need on Debian, as root: the OCI runtime,
# monitor and CNI packages, busybox for the test images, and crictl and
# critest (sigs.k8s.io/cri-tools) and the kubelet (test/kubelet, for the
# kubelet end-to-end test and the node e2e suite) built from the Go module
# proxy, and jq. With --runtime, only the packages and crictl.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

CRI_TOOLS_VERSION=v1.37.0
# The kubelet's version is the k8s.io/kubernetes that test/kubelet pins.
KUBELET_VERSION=$(sed -n 's/^\tk8s\.io\/kubernetes \(v[^ ]*\)$/\1/p' test/kubelet/go.mod)
[ -n "$KUBELET_VERSION" ] || { echo "install-deps: no k8s.io/kubernetes version in test/kubelet/go.mod"; exit 1; }
BIN="$PWD/_output/bin"
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"
export GOFLAGS=-buildvcs=false

command -v go >/dev/null || { echo "install-deps: Go 1.26+ is needed at /usr/local/go (https://go.dev/dl)"; exit 1; }

# apt_install PKG...: installs those of the Debian packages that are missing.
apt_install() {
	local p missing=()
	for p in "$@"; do
		dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	[ ${#missing[@]} -gt 0 ] || return 0
	echo "install-deps: apt-get install ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

apt_install runc crun conmon containernetworking-plugins criu iptables iproute2 busybox libseccomp-dev pkg-config

mkdir -p "$BIN"
if ! "$BIN/crictl" --version 2>/dev/null | grep -q "$CRI_TOOLS_VERSION"; then
	echo "install-deps: building crictl $CRI_TOOLS_VERSION"
	GOBIN="$BIN" go install -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION" \
		"sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION"
fi
# Debian 12's runc (1.1.5) cannot idmap mounts, which pods in a user
# namespace (hostUsers: false) need: runc 1.5 is built from its Go module
# (with cgo and libseccomp, as runc's own Makefile builds it) for crid's
# runtime handler runc-userns (default.toml). Debian's runc stays the
# default handler.
RUNC_VERSION=v1.5.3
RUNC_USERNS=/usr/local/libexec/crid/runc
if ! "$RUNC_USERNS" --version 2>/dev/null | grep -qx "runc version ${RUNC_VERSION#v}"; then
	echo "install-deps: building runc $RUNC_VERSION into $RUNC_USERNS"
	mkdir -p "$(dirname "$RUNC_USERNS")"
	runc_bin=$(mktemp -d)
	CGO_ENABLED=1 GOBIN="$runc_bin" go install -tags "seccomp urfave_cli_no_docs" \
		-ldflags "-X main.version=${RUNC_VERSION#v}" "github.com/opencontainers/runc@$RUNC_VERSION"
	install -m 0755 "$runc_bin/runc" "$RUNC_USERNS"
	rm -rf "$runc_bin"
fi
# --runtime: only what running crid needs (the set-up command); the test
# tools below take minutes to build and only the tests need them.
[ "${1:-}" = "--runtime" ] && exit 0
# Only the tests need these: jq reads the node e2e suite's JSON report
# (test/nodee2e/run.sh), and the rig copies bash, curl and netcat-openbsd's
# nc into its agnhost image, as upstream's has them.
apt_install jq curl bash netcat-openbsd
if [ ! -x "$BIN/critest" ] || [ "$(cat "$BIN/critest.version" 2>/dev/null)" != "$CRI_TOOLS_VERSION" ]; then
	echo "install-deps: building critest $CRI_TOOLS_VERSION"
	src=$(go mod download -json "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	cp -r "$src/." "$work/"
	chmod -R u+w "$work"
	(cd "$work" && go test -c -o "$BIN/critest" ./cmd/critest)
	echo "$CRI_TOOLS_VERSION" > "$BIN/critest.version"
fi
if ! "$BIN/kubelet" --version 2>/dev/null | grep -qx "Kubernetes $KUBELET_VERSION"; then
	# About 8 minutes on 2 cores with a cold build cache.
	echo "install-deps: building kubelet $KUBELET_VERSION"
	(cd test/kubelet && go build -ldflags "-X k8s.io/component-base/version.gitVersion=$KUBELET_VERSION" \
		-o "$BIN/kubelet" .)
fi
