#!/bin/sh
# /init of the guest qseries boots to run a scenario on the kernel's
# mtty device (guest.py builds the initramfs around it).
#
# /qseries-guest.env (written by guest.py) says what to load and make:
# MODULES (insmod order), MTTY, MDEV_UUIDS, QEMU, QEMU_DATA, PROBE.
# The console (ttyS0) gets the progress lines "qseries-guest: ..." that
# guest.py reads; the results port (ttyS1) gets what /scenario.sh
# writes, or one line "QSERIES-GUEST-ERROR: ..." when the guest could
# not be set up.  Every way out powers the machine off.

/bin/busybox mkdir -p /proc /sys /dev /run /tmp /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root TMPDIR=/tmp
RESULTS=/dev/ttyS1

fail() {
	echo "qseries-guest: error: $*"
	echo "QSERIES-GUEST-ERROR: $*" >"$RESULTS"
	poweroff -f
	exit 1
}

mount -t proc proc /proc || fail "cannot mount /proc"
mount -t sysfs sysfs /sys || fail "cannot mount /sys"
mount -t devtmpfs devtmpfs /dev || fail "cannot mount devtmpfs on /dev"
mount -t tmpfs tmpfs /run || fail "cannot mount tmpfs on /run"
mount -t tmpfs tmpfs /tmp || fail "cannot mount tmpfs on /tmp"
exec </dev/console >/dev/console 2>&1
read -r uptime _ </proc/uptime
echo "qseries-guest: init at $uptime s"

. /qseries-guest.env || fail "cannot read /qseries-guest.env"
if [ "$PROBE" = 1 ]; then
	echo "qseries-guest: done"
	poweroff -f
	exit 0
fi
[ -c "$RESULTS" ] || fail "no results port $RESULTS"
# Raw: what the script writes arrives as it wrote it (no \r added).
stty -F "$RESULTS" raw -echo || fail "cannot set $RESULTS raw"
ip link set lo up || fail "cannot bring up lo"

for module in $MODULES $MTTY; do
	said=$(insmod "$module" 2>&1) || fail "insmod ${module##*/} failed: $said"
done

TYPE=/sys/class/mdev_bus/mtty/mdev_supported_types/mtty-1
i=0
for uuid in $MDEV_UUIDS; do
	[ -d "$TYPE" ] || fail "no mdev type mtty-1 ($TYPE is missing)"
	said=$( (echo "$uuid" >"$TYPE/create") 2>&1) ||
		fail "mdev $uuid refused by $TYPE/create: $said"
	[ -d "/sys/bus/mdev/devices/$uuid" ] ||
		fail "mdev $uuid made, but /sys/bus/mdev/devices/$uuid is missing"
	export "MDEV$i=/sys/bus/mdev/devices/$uuid"
	i=$((i + 1))
done

export QEMU QEMU_DATA RESULTS
echo "qseries-guest: scenario started"
sh /scenario.sh
status=$?
echo "qseries-guest: scenario exited $status"
echo "qseries-guest: done"
poweroff -f
