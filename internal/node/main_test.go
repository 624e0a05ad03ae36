package node

import (
	"os"
	"testing"

	"github.com/crid-project/crid/internal/namespaces"
)

func TestMain(m *testing.M) {
	namespaces.Init() // the idmapped-mount probe re-executes the test binary
	os.Exit(m.Run())
}
