#!/usr/bin/env bash
# Builds the guest node the production-node tests boot: Debian 12 with
# systemd as PID 1 (pure cgroup v2), AppArmor, Debian's kernel and the
# runtime packages crid uses, as an ext4 image plus the kernel and initramfs
# to boot it with. Offline but for Debian's apt mirror; the result is cached
# under $CRID_GUEST_CACHE keyed by this file's hash, so a second run only
# prints the path. Prints the cache dir holding base.raw, vmlinuz, initrd.img.
set -euo pipefail
cd "$(dirname "$0")"

cache=${CRID_GUEST_CACHE:-/var/cache/crid-guest}
key=$(sha256sum image.sh | cut -c1-16)
out="$cache/$key"
if [ -s "$out/base.raw" ] && [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ]; then
	echo "$out"
	exit 0
fi
mirror=${CRID_GUEST_MIRROR:-http://deb.debian.org/debian}

# What a node crid runs on has, and what the tests in the guest use.
packages=(
	systemd systemd-sysv dbus udev kmod linux-image-amd64 initramfs-tools
	apparmor sudo runc crun conmon criu containernetworking-plugins
	iproute2 iptables util-linux mount procps e2fsprogs busybox ca-certificates curl
)

root=$(mktemp -d "$cache.root.XXXXXX")
trap 'umount -R "$root/proc" "$root/sys" "$root/dev" 2>/dev/null || true; rm -rf "$root"' EXIT
mkdir -p "$cache"
echo "guest: debootstrap bookworm (${#packages[@]} packages) into $root" >&2
debootstrap --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" \
	bookworm "$root" "$mirror" >"$root.log" 2>&1 || { tail -30 "$root.log" >&2; exit 1; }
rm -f "$root.log"

cat >"$root/etc/fstab" <<'FSTAB'
/dev/vda / ext4 defaults,noatime 0 1
FSTAB
echo crid-guest >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 crid-guest\n' >"$root/etc/hosts"
# initramfs-tools' default MODULES=most carries virtio; make sure of it.
printf 'virtio_pci\nvirtio_blk\next4\n' >>"$root/etc/initramfs-tools/modules"
chroot "$root" update-initramfs -u -k all >/dev/null

# The run unit: mounts the input disk, runs its run.sh, records the exit
# code beside the log on the same disk, and powers the guest off.
cat >"$root/usr/local/sbin/crid-guest-run" <<'RUN'
#!/bin/bash
mkdir -p /guest
mount /dev/vdb /guest || { echo "crid-guest: no input disk"; systemctl poweroff --no-block; exit 1; }
mkdir -p /guest/out
echo "crid-guest: run.sh starts" >/dev/ttyS0
(cd /guest && bash ./run.sh) >/guest/out/log 2>&1
echo $? >/guest/out/rc
echo "crid-guest: run.sh exited $(cat /guest/out/rc)" >/dev/ttyS0
journalctl -b --no-pager >/guest/out/journal 2>&1 || true
sync
umount /guest
systemctl poweroff --no-block
RUN
chmod 755 "$root/usr/local/sbin/crid-guest-run"
cat >"$root/etc/systemd/system/crid-guest-run.service" <<'UNIT'
[Unit]
Description=crid guest test run
After=multi-user.target dbus.service apparmor.service
Wants=dbus.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/crid-guest-run
TimeoutStartSec=infinity

[Install]
WantedBy=default.target
UNIT
chroot "$root" systemctl enable crid-guest-run.service >/dev/null 2>&1
# Nothing that waits for a network the guest does not have.
chroot "$root" systemctl mask systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer \
	e2scrub_all.timer fstrim.timer man-db.timer >/dev/null 2>&1 || true
rm -f "$root/etc/machine-id" && touch "$root/etc/machine-id"

tmp="$out.tmp"
rm -rf "$tmp" && mkdir -p "$tmp"
cp "$(ls "$root"/boot/vmlinuz-* | tail -1)" "$tmp/vmlinuz"
cp "$(ls "$root"/boot/initrd.img-* | tail -1)" "$tmp/initrd.img"
rm -rf "$root/boot"/* "$root/var/cache/apt/archives"/*.deb
truncate -s 6G "$tmp/base.raw"
mkfs.ext4 -q -F -L crid-guest -d "$root" "$tmp/base.raw"
rm -rf "$out" && mv "$tmp" "$out"
# Images of earlier versions of this script are of no further use.
find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name "$key" ! -name "$key.tmp" -exec rm -rf {} +
echo "$out"
