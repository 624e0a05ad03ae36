#!/bin/bash
# Runs inside the guest node, as root, from the input disk (test/guest/run.sh
# puts it there as run.sh): crid's production-node tests with each cgroup
# driver. Every step runs, each result is printed as "-- NAME: ok|FAILED",
# and the exit code is 1 if any failed.
set -u
cd "$(dirname "$0")"
top=$PWD
suite=$(cat suite)
# CRID_E2E_CRIU: Debian's CRIU works on Debian's kernel, so the checkpoint
# tests must run here, not skip.
export PATH="$top/bin:$PATH" CRID_E2E_BIN="$top/bin" CRID_E2E_REQUIRED=1 CRID_E2E_GUEST=1 TMPDIR=/var/tmp \
	CRID_E2E_CRIU=required \
	RIG_GUEST_BIN="$top/bin/rig-guest"
# CRID_E2E_BENCH, passed on by run.sh: the on-demand benchmarks run too.
[ -s "$top/e2e-env" ] && export "$(cat "$top/e2e-env")"
rc=0
# say prints to the log and, for whoever watches the boot, the console.
say() { echo "$*"; echo "$*" >/dev/ttyS0 2>/dev/null || true; }
step() {
	local name=$1
	shift
	say "== $name ($(date +%T))"
	if "$@"; then
		say "-- $name: ok"
	else
		say "-- $name: FAILED"
		rc=1
	fi
}
e2e() { # e2e DRIVER REGEXP
	(cd "$top/src/test/e2e" && CRID_E2E_CGROUP_DRIVER=$1 "$top/bin/e2e.test" -test.v -test.timeout 40m -test.run "$2")
}
critest() { # critest DRIVER FOCUS|"" (the groups crid implements)
	local focus=()
	[ -n "$2" ] && focus=("CRITEST_FOCUS=$2")
	(cd "$top/src" && env CRID_CGROUP_DRIVER="$1" "${focus[@]}" bash test/critest.sh)
}

# The runc-userns handler's runtime, where the built-in configuration
# looks for it: pods in a user namespace on Debian's kernel and cgroup v2.
install -D -m 0755 "$top/bin/runc-userns" /usr/local/libexec/crid/runc
step "node facts" sh -c 'uname -r; stat -fc %T /sys/fs/cgroup; cat /sys/fs/cgroup/cgroup.controllers; echo "PSI: $(cat /sys/fs/cgroup/cpu.pressure 2>&1 | head -1)"; systemctl --version | head -1; runc --version | head -1; conmon --version | head -1'
step "crid check" crid check
# Not TestOOMKilled with systemd: OOMKilled is racy there (conmon reads the
# scope's memory.events after the container died, and systemd may have
# removed the empty scope first); it runs with cgroupfs below.
focused='TestKubeletSummary|TestCgroupResources|TestUpdatePodSandboxResources|TestAppArmor|TestSystemdService|TestPodLifecycle|TestStatsMetricsEvents|TestKill9KeepsContainers|TestConmonKilled|TestUserNamespacePod|TestCheckpoint'
if [ "$suite" = full ] || [ "$suite" = critest ]; then
	for d in systemd cgroupfs; do
		[ "$suite" = full ] && step "e2e, $d driver" e2e "$d" .
		step "critest, $d driver" critest "$d" ""
	done
elif [ "$suite" = e2e ]; then
	step "e2e, systemd driver" e2e systemd "$(cat "$top/e2e-run")"
else
	step "e2e, systemd driver" e2e systemd "$focused"
	step "e2e, cgroupfs driver" e2e cgroupfs 'TestCgroupResources|TestUpdatePodSandboxResources|TestOOMKilled|TestPodLifecycle|TestStatsMetricsEvents'
	step "critest AppArmor, systemd driver" critest systemd 'AppArmor'
fi
exit $rc
