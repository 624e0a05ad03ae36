//go:build !crashpoints

// Package crashpoint marks the steps of multi-step operations where a crash
// must leave nothing behind once crid restarts. In the normal build Hit does
// nothing and costs nothing; the end-to-end tests build crid with
// `-tags crashpoints` and set CRID_CRASH_AT to the name of a point, where
// crid then kills itself with SIGKILL, as a power cut would; with
// CRID_CRASH_LIST set it lists every point it passes. Most points are
// defined by internal/steps, one set per recorded step.
package crashpoint

// Hit is a crash point. Names are "<op>/<step>[/made|/undone]".
func Hit(name string) {}
