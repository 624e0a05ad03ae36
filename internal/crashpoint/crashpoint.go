//go:build !crashpoints

// Package crashpoint marks the steps of multi-step operations where a crash
// must leave nothing behind once crid restarts. In the normal build Hit does
// nothing and costs nothing; the end-to-end tests build crid with
// `-tags crashpoints` and set CRID_CRASH_AT to the name of a point, where
// crid then kills itself with SIGKILL, as a power cut would.
package crashpoint

// Hit is a crash point. Names are "<package>/<step>".
func Hit(name string) {}
