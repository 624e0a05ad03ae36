#!/usr/bin/env bash
# Boots the guest node once: a copy-on-write overlay of the cached base
# image (each boot starts clean), the directory IN as a second disk (its
# run.sh runs as root once the guest is up, with that disk mounted as its
# working directory), and no network device. When run.sh ends the guest
# writes out/rc and out/log on that disk and powers off; boot.sh then copies
# out/ to OUT and exits with run.sh's code. qemu is killed by its PID after
# TIMEOUT seconds (default 1800), and everything boot.sh made is removed.
#   usage: boot.sh IN OUT [TIMEOUT]
set -euo pipefail
in=$(realpath "$1") out=$2 timeout=${3:-1800}
here=$(cd "$(dirname "$0")" && pwd)
base=$(bash "$here/image.sh")
mkdir -p "$out"
work=$(mktemp -d /var/tmp/crid-guest-boot.XXXXXX)
qemu_pid=
cleanup() {
	if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill -9 "$qemu_pid" 2>/dev/null || true
		wait "$qemu_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

qemu-img create -q -f qcow2 -b "$base/base.raw" -F raw "$work/root.qcow2" 20G
# The input disk: IN plus room for what the guest writes.
size=$(( $(du -sm "$in" | cut -f1) * 2 + 2048 ))
truncate -s "${size}M" "$work/io.raw"
mkfs.ext4 -q -F -L crid-io -d "$in" "$work/io.raw"

cpus=$(nproc)
mem=${CRID_GUEST_MEM:-6144}
echo "guest: booting ($cpus vCPUs under TCG, ${mem} MiB, timeout ${timeout}s); console in $out/console.log" >&2
# psi=1: pressure stall information on, as on a node whose kubelet reports
# it (KubeletPSI), whatever the kernel's build-time default.
qemu-system-x86_64 -nodefaults -no-user-config -nographic -no-reboot \
	-machine q35 -accel tcg,thread=multi -cpu max -smp "$cpus" -m "$mem" \
	-kernel "$base/vmlinuz" -initrd "$base/initrd.img" \
	-append "root=/dev/vda rw console=ttyS0 panic=-1 quiet systemd.show_status=0 net.ifnames=0 psi=1" \
	-drive "file=$work/root.qcow2,if=virtio,format=qcow2,cache=unsafe" \
	-drive "file=$work/io.raw,if=virtio,format=raw,cache=unsafe" \
	-serial "file:$out/console.log" -monitor none -display none \
	-device virtio-rng-pci &
qemu_pid=$!
start=$SECONDS
while kill -0 "$qemu_pid" 2>/dev/null; do
	if (( SECONDS - start > timeout )); then
		echo "guest: timed out after ${timeout}s; killing qemu (pid $qemu_pid)" >&2
		break
	fi
	sleep 2
done
cleanup_rc=0
if kill -0 "$qemu_pid" 2>/dev/null; then
	kill -9 "$qemu_pid"; wait "$qemu_pid" 2>/dev/null || true
	cleanup_rc=124
else
	wait "$qemu_pid" || true
fi
qemu_pid=
echo "guest: ran $(( SECONDS - start ))s" >&2
# Read the results straight from the disk image; nothing mounts it.
debugfs -R "rdump /out $work" "$work/io.raw" >/dev/null 2>&1 || true
if [ -d "$work/out" ]; then
	cp -r "$work/out/." "$out/"
fi
[ "$cleanup_rc" = 0 ] || exit "$cleanup_rc"
[ -s "$out/rc" ] || { echo "guest: no exit code recorded (see $out/console.log)" >&2; exit 125; }
exit "$(cat "$out/rc")"
