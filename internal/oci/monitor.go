package oci

import "context"

// Monitor is a per-container monitor: a process that outlives crid, creates
// the container with the OCI runtime, holds its stdio, writes its log and
// exit file. Conmon is the default; conmon-rs or a VM shim could implement
// it too.
type Monitor interface {
	// Create starts the monitor, which runs `runtime create` (or, with
	// Restore, `runtime restore`). It returns the container's init pid
	// once the container is created (restored), or the runtime's error. It need not clean up on failure: the caller does.
	Create(ctx context.Context, req MonitorRequest) (pid int, err error)
	// ReopenLog makes the monitor reopen the log file at logPath and
	// returns once it has.
	ReopenLog(ctx context.Context, bundle, logPath string) error
	// AttachSocket is the path of the monitor's attach socket.
	AttachSocket(bundle string) string
	// PID returns the monitor's pid if it is alive.
	PID(containerDir, id string) (int, bool)
}

// MonitorRequest is what a Monitor needs to create one container.
type MonitorRequest struct {
	CreateOptions
	// ContainerDir is the container's state directory (exists).
	ContainerDir string
	// ExitDir is where the exit file named after the ID goes.
	ExitDir string
}
