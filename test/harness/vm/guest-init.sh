#!/bin/busybox sh
# shellcheck shell=dash
# /init (PID 1) of the test guest. Mounts the pseudo filesystems, loads the
# bundled modules, configures the user-mode network (guest 10.0.2.15/24; the
# NBD server is reachable only at $NBD_HOST:$NBD_PORT), runs /vm/guest.sh from
# the per-run cpio that run-guest.sh appends, prints GUEST-EXIT=<status> on a
# line of its own and powers the machine off. Nothing here may hang: the
# guest script runs under `timeout`, and qemu runs with -no-reboot.
export PATH=/bin HOME=/root
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
LD_LIBRARY_PATH=$(cat /etc/vm/ldpath)
export LD_LIBRARY_PATH

finish() {
    echo
    echo "GUEST-EXIT=$1"
    sync
    poweroff -f   # ACPI power-off; qemu then exits
    reboot -f     # fallback: qemu runs with -no-reboot, so this exits too
    sleep 10
}

echo "GUEST-BOOTED uptime=$(cut -d' ' -f1 /proc/uptime)"
while read -r m; do
    insmod "$m" || echo "vm-init: warning: insmod $m failed"
done < /etc/vm/modules

# Network: the first non-loopback interface (virtio-net).
ip link set lo up
ifc=
for _ in 1 2 3 4 5 6 7 8 9 10; do
    for d in /sys/class/net/*; do
        [ "${d##*/}" = lo ] || { ifc=${d##*/}; break; }
    done
    [ -n "$ifc" ] && break
    sleep 0.5
done
[ -n "$ifc" ] || { echo "vm-init: no network interface"; finish 125; }
ip addr add 10.0.2.15/24 dev "$ifc"
ip link set "$ifc" up

if ! [ -r /vm/env ] || ! [ -r /vm/guest.sh ]; then
    echo "vm-init: no /vm/guest.sh (use run-guest.sh)"; finish 125
fi
# shellcheck source=/dev/null
. /vm/env   # NBD_HOST NBD_PORT NBD_EXPORT NBD_DEVICE VM_GUEST_TIMEOUT; sets "$@"
cd /tmp || true
timeout "${VM_GUEST_TIMEOUT:-150}" sh /vm/guest.sh "$@"
finish $?
