package node

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/crid-project/crid/internal/config"
	"github.com/crid-project/crid/internal/namespaces"
)

// idmapFact tells whether pods with their own user namespace
// (hostUsers: false) could get idmapped mounts: which runtime handlers
// report idmap mounts in `<runtime> features` (runc 1.2 and later, crun
// 1.9 and later do), on a kernel that has them (5.12; overlayfs 5.19) and
// a filesystem under crid's root that takes them.
func idmapFact(ctx context.Context, cfg config.Config, kernel string) Fact {
	var yes, no []string
	for name, r := range cfg.Runtimes {
		if runtimeIDMap(ctx, r.Path) {
			yes = append(yes, name)
		} else {
			no = append(no, name)
		}
	}
	sort.Strings(yes)
	sort.Strings(no)
	f := Fact{Name: "idmapped mounts"}
	if !kernelAtLeast(kernel, 5, 19) {
		f.Detail = fmt.Sprintf("kernel %s lacks idmapped overlayfs mounts (5.19): pods in a user namespace cannot run", kernel)
		return f
	}
	// What crid itself does for such a pod: idmap its image layers. The
	// root may not exist before crid first starts: its nearest existing
	// parent is on the filesystem it will be made on.
	probe := cfg.Root
	for {
		if _, err := os.Stat(probe); err == nil || probe == filepath.Dir(probe) {
			break
		}
		probe = filepath.Dir(probe)
	}
	if err := namespaces.IDMapSupported(probe); err != nil {
		f.Detail = fmt.Sprintf("crid's root %s cannot be mounted idmapped (%v): pods in a user namespace cannot run", cfg.Root, err)
		return f
	}
	if len(yes) == 0 {
		f.Detail = "no runtime handler reports idmap mounts (runc 1.2+, crun 1.9+): pods in a user namespace cannot run"
		if len(no) > 0 {
			f.Detail += "; without: " + strings.Join(no, ", ")
		}
		return f
	}
	f.OK, f.Detail = true, "runtime handlers with idmap mounts: "+strings.Join(yes, ", ")
	return f
}

// runtimeIDMap reads the OCI runtime's features document.
func runtimeIDMap(ctx context.Context, path string) bool {
	abs, err := exec.LookPath(path)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, abs, "features").Output()
	if err != nil {
		return false
	}
	var f features.Features
	if json.Unmarshal(out, &f) != nil || f.Linux == nil || f.Linux.MountExtensions == nil || f.Linux.MountExtensions.IDMap == nil {
		return false
	}
	e := f.Linux.MountExtensions.IDMap.Enabled
	return e != nil && *e
}

// kernelAtLeast compares a release string ("6.1.0-50-amd64") with major.minor.
func kernelAtLeast(release string, major, minor int) bool {
	var ma, mi int
	if _, err := fmt.Sscanf(release, "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}
