#!/usr/bin/env bash
# Runs all of crid's tests, as root on Debian: static checks, unit and fuzz
# seed tests (with the race detector), end-to-end tests that drive a real
# crid with crictl, the CRI validation suite (critest), a subset of
# Kubernetes' node end-to-end suite (test/nodee2e), and the
# production-node tests in a Debian guest VM (test/guest), all offline.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH" GOFLAGS=-buildvcs=false

bash hack/install-deps.sh

echo "== static checks"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
[ -z "$unformatted" ] || { echo "gofmt needed:"; echo "$unformatted"; exit 1; }
go vet ./...

echo "== build"
go build -o _output/bin/crid ./cmd/crid
go build -o _output/bin/rig ./test/rig/cmd/rig

echo "== unit tests (race detector)"
go test -count=1 -race ./internal/... ./cmd/...

echo "== end-to-end tests"
CRID_E2E_REQUIRED=1 go test -count=1 -timeout 40m ./test/...

echo "== critest"
CRITEST_USERNS=required bash test/critest.sh

echo "== Kubernetes' node e2e suite, the CI subset (test/nodee2e)"
bash test/nodee2e/run.sh

echo "== the production node, in a guest VM (systemd, cgroup v2, AppArmor)"
bash test/guest/run.sh
echo "== all tests passed"
