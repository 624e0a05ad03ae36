//go:build tools

// Package nodee2e pins Kubernetes' node end-to-end suite
// (k8s.io/kubernetes/test/e2e_node), agnhost (its main test image's
// program) and the ginkgo CLI that runs the suite in parallel processes, so
// that build.sh compiles them from this module: k8s.io/kubernetes
// is not meant to be a dependency, so go.mod pins every staging module it
// replaces to the matching published version (as test/kubelet does).
package nodee2e

import (
	_ "github.com/onsi/ginkgo/v2/ginkgo"
	_ "k8s.io/kubernetes/test/e2e_node"
	_ "k8s.io/kubernetes/test/images/agnhost"
)
