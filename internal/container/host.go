package container

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/sys/capability"
)

// hostFacts are limits of the machine crid must respect when asking runc for
// things: asking for more fails the whole create.
type hostFacts struct {
	// capabilities in crid's bounding set, as "CAP_*" names.
	capabilities []string
	// minOOMScoreAdj is the lowest oom_score_adj a container may get:
	// without CAP_SYS_RESOURCE nothing may go below crid's own.
	minOOMScoreAdj int
	// swapLimit: the memory cgroup can limit swap (runc fails a container
	// with a swap limit otherwise).
	swapLimit bool
}

func readHostFacts() (hostFacts, error) {
	caps, err := capability.NewPid2(0)
	if err != nil {
		return hostFacts{}, fmt.Errorf("read capabilities: %w", err)
	}
	if err := caps.Load(); err != nil {
		return hostFacts{}, fmt.Errorf("read capabilities: %w", err)
	}
	supported, err := capability.ListSupported()
	if err != nil {
		return hostFacts{}, fmt.Errorf("list capabilities: %w", err)
	}
	var h hostFacts
	for _, c := range supported {
		if caps.Get(capability.BOUNDING, c) {
			h.capabilities = append(h.capabilities, "CAP_"+strings.ToUpper(c.String()))
		}
	}
	for _, f := range []string{"/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", "/sys/fs/cgroup/memory.swap.max", "/sys/fs/cgroup/init.scope/memory.swap.max"} {
		if _, err := os.Stat(f); err == nil {
			h.swapLimit = true
		}
	}
	h.minOOMScoreAdj = -1000
	if !caps.Get(capability.BOUNDING, capability.CAP_SYS_RESOURCE) {
		raw, err := os.ReadFile("/proc/self/oom_score_adj")
		if err != nil {
			return hostFacts{}, err
		}
		if h.minOOMScoreAdj, err = strconv.Atoi(strings.TrimSpace(string(raw))); err != nil {
			return hostFacts{}, fmt.Errorf("parse oom_score_adj: %w", err)
		}
	}
	return h, nil
}

// runtimeFeatures asks an OCI runtime what it supports (`runc features`,
// runtime-spec's features document). A runtime that cannot say supports
// nothing optional.
func runtimeFeatures(path string) (rro bool) {
	out, err := exec.Command(path, "features").Output()
	if err != nil {
		return false
	}
	var f struct {
		MountOptions []string `json:"mountOptions"`
	}
	if json.Unmarshal(out, &f) != nil {
		return false
	}
	return slices.Contains(f.MountOptions, "rro")
}
