package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// joinFS moves pid into the cgroupfs path parent in every mounted cgroup
// hierarchy (v1 controllers and the v2 unified one), creating the cgroup
// where it is missing. Written by hand rather than with
// opencontainers/cgroups' fs managers: those join only the v1 controllers
// or only v2, and this host layout (v1 plus the unified hierarchy beside
// it) needs both, for a process that gets no limits of its own.
func joinFS(pid int, parent string) error {
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	for _, m := range mounts {
		dir := filepath.Join(m.point, filepath.Clean("/"+parent))
		if err := mkdirCgroup(m, dir); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("join %s: %w", dir, err)
		}
	}
	return nil
}

// removeFS removes the cgroupfs path in every mounted hierarchy; one that
// does not exist is not an error, one that still holds a process is.
func removeFS(path string) error {
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range mounts {
		dir := filepath.Join(m.point, filepath.Clean("/"+path))
		if dir == m.point {
			continue
		}
		if err := os.Remove(dir); err != nil && !os.IsNotExist(err) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

type cgroupMount struct {
	point  string
	cpuset bool
}

func cgroupMounts() ([]cgroupMount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []cgroupMount
	seen := map[string]bool{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		// ... mountpoint ... - fstype source superoptions
		fields := strings.Fields(s.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+3 >= len(fields) || len(fields) < 5 {
			continue
		}
		fstype := fields[sep+1]
		if fstype != "cgroup" && fstype != "cgroup2" {
			continue
		}
		point := fields[4]
		if seen[point] {
			continue
		}
		seen[point] = true
		cpuset := fstype == "cgroup" && hasOpt(fields[sep+3], "cpuset")
		out = append(out, cgroupMount{point: point, cpuset: cpuset})
	}
	return out, s.Err()
}

func hasOpt(opts, opt string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == opt {
			return true
		}
	}
	return false
}

// mkdirCgroup creates dir and, in a v1 cpuset hierarchy, copies cpus and
// mems from the parent: a new cpuset is empty and refuses tasks.
func mkdirCgroup(m cgroupMount, dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if dir != m.point {
		if err := mkdirCgroup(m, filepath.Dir(dir)); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		return fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	if m.cpuset {
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			b, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, f), b, 0); err != nil {
				return fmt.Errorf("init %s: %w", dir, err)
			}
		}
	}
	return nil
}
