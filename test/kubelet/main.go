// Command kubelet is the upstream kubelet, built from the Go module proxy for
// crid's end-to-end test (test/e2e/kubelet_test.go): k8s.io/kubernetes is
// not meant to be a dependency, so this module pins every staging module it
// replaces to the matching published version (see go.mod).
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	os.Exit(cli.Run(app.NewKubeletCommand(context.Background())))
}
