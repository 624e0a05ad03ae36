//go:build crashpoints

package crashpoint

import (
	"os"
	"sync"
	"syscall"
)

var (
	at   = os.Getenv("CRID_CRASH_AT")
	list = os.Getenv("CRID_CRASH_LIST")

	mu   sync.Mutex
	seen = map[string]bool{}
)

// Hit kills crid when name is the point CRID_CRASH_AT names, and appends
// each point it passes, once, to the file CRID_CRASH_LIST names: the tests
// learn the points from there instead of a hand-kept list.
func Hit(name string) {
	if list != "" {
		mu.Lock()
		if !seen[name] {
			seen[name] = true
			if f, err := os.OpenFile(list, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
				f.WriteString(name + "\n")
				f.Close()
			}
		}
		mu.Unlock()
	}
	if name == at {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}
