// Package oci runs containers with an OCI runtime (runc and compatible
// binaries) under one monitor process per container.
//
// The monitor (conmon by default, see Monitor) is started by crid but is not
// crid's child for long: it daemonizes, so containers keep running and their
// logs keep flowing while crid is down or restarting. The monitor runs
// `runtime create`, holds the container's stdio, writes the CRI log file,
// records the exit status in a file under Config.ExitDir and serves the
// attach socket. crid learns about exits by watching that directory, which
// also works for exits that happened while it was not running.
//
// A monitor that dies (OOM-killed, killed by an operator) writes no exit
// file, so the Runtime also holds a pidfd of every watched monitor in one
// epoll set and reports their ends on MonitorExits. When the exit dir
// watcher may have lost events, Rescans tells the caller to re-read the
// exit status of its live containers.
//
// Everything else (start, kill, delete, state, exec, update) is a direct call
// of the OCI runtime binary.
//
// Files of one container live in StateDir/containers/<id>:
//
//	conmon.pid   pid of the monitor (written by conmon)
//	init.pid     pid of the container's init (written by runc)
//	exit         exit code (written by conmon, copy of ExitDir/<id>)
//	oom          present when the container's cgroup hit an OOM kill
//	bundle.link  symlink to the bundle, if the bundle is elsewhere
//	log.link     symlink to the CRI log file, for ReopenLog
//
// conmon creates its control FIFO "ctl", "winsz" and the "attach" socket in
// the bundle directory, so the bundle must outlive the container.
package oci
