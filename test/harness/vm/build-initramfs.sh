#!/usr/bin/env bash
# Build (or reuse) the guest initramfs for run-guest.sh and print its path.
#
# Contents: static busybox (shell + applets), the kernel modules nbd, ext4 and
# virtio-net/virtio-pci with their dependencies (resolved through modules.dep
# by `modprobe --show-depends`; built-in ones need nothing), nbd-client and
# e2fsprogs with their shared libraries, and guest-init.sh as /init.
#
# Output: $BLOCKGATE_VM_CACHE/initramfs-<kver>[-<hash of extras>].cpio.gz
# (default ${XDG_CACHE_HOME:-$HOME/.cache}/blockgate-vm), rebuilt only when an
# input changes (a stamp of the inputs' names, sizes and mtimes sits beside
# it). Written to a temp name and renamed: concurrent runs never see a partial
# image. Optional environment:
#   BLOCKGATE_VM_KVER           kernel version (default: newest with nbd.ko)
#   BLOCKGATE_VM_EXTRA_BINS     more host binaries (their libraries come too)
#   BLOCKGATE_VM_EXTRA_MODULES  more kernel modules to load at boot
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"

KVER=$(vm_kver)
MODULES="nbd ext4 virtio_pci virtio_net ${BLOCKGATE_VM_EXTRA_MODULES:-}"
BINS="/bin/busybox /usr/sbin/nbd-client /usr/sbin/mke2fs /usr/sbin/e2fsck"
BINS="$BINS /usr/sbin/tune2fs /usr/sbin/dumpe2fs ${BLOCKGATE_VM_EXTRA_BINS:-}"
extra="${BLOCKGATE_VM_EXTRA_BINS:-}${BLOCKGATE_VM_EXTRA_MODULES:-}"
OUT="$BLOCKGATE_VM_CACHE/initramfs-$KVER${extra:+-$(echo "$extra" | sha256sum | cut -c1-8)}.cpio.gz"

for b in $BINS; do
    [ -x "$b" ] || vm_die "missing $b (scripts/install-deps.sh installs it)"
done
for t in modprobe ldd cpio gzip; do
    command -v "$t" >/dev/null || vm_die "missing $t (scripts/install-deps.sh installs it)"
done

# Module files in load order, deduplicated. -C /dev/null ignores the host's
# modprobe.d options; softdeps from modules.softdep are still included.
mods=$(for m in $MODULES; do
           modprobe -C /dev/null -S "$KVER" --show-depends "$m" ||
               vm_die "module $m not found for kernel $KVER"
       done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }')

# Shared libraries (as the dynamic loader resolves them) of all binaries.
libs=$(for b in $BINS; do
           ldd "$b" 2>/dev/null | awk '/=> \// { print $3 } /^\t\// { print $1 }' || true
       done | sort -u)

stamp=$( { cat "$HERE/build-initramfs.sh" "$HERE/guest-init.sh" "$HERE/common.sh"
           echo "$KVER $MODULES $BINS"
           for f in $BINS $mods $libs /etc/mke2fs.conf; do
               if [ -e "$f" ]; then stat -L -c '%n %s %Y' "$f"; fi
           done; } | sha256sum | cut -d' ' -f1)
if [ -s "$OUT" ] && [ "$(cat "$OUT.stamp" 2>/dev/null)" = "$stamp" ]; then
    printf '%s\n' "$OUT"
    exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,run,mnt,root,usr,etc/vm}
ln -s bin "$root/sbin"
ln -s ../bin "$root/usr/bin"
ln -s ../bin "$root/usr/sbin"

# Busybox applets first, so the real binaries copied below replace them.
cp /bin/busybox "$root/bin/busybox"
for a in $("$root/bin/busybox" --list); do
    [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"
done
for b in $BINS; do
    [ "$b" = /bin/busybox ] && continue
    rm -f "$root/bin/${b##*/}"
    cp -L "$b" "$root/bin/${b##*/}"
done
ln -sf mke2fs "$root/bin/mkfs.ext4"
ln -sf e2fsck "$root/bin/fsck.ext4"

# Libraries go to the same paths as on the host; their directories form
# LD_LIBRARY_PATH in the guest (there is no ld.so.cache there).
for l in $libs; do
    mkdir -p "$root${l%/*}"
    cp -L "$l" "$root$l"
done
printf '%s\n' "$libs" | sed 's|/[^/]*$||' | sort -u | paste -sd: > "$root/etc/vm/ldpath"

# Kernel modules, decompressed (busybox insmod wants plain .ko files).
: > "$root/etc/vm/modules"
for m in $mods; do
    dst="$root$m"
    mkdir -p "${dst%/*}"
    case $m in
        *.ko.xz)  dst=${dst%.xz};  xz -dc "$m" > "$dst" ;;
        *.ko.zst) dst=${dst%.zst}; zstd -qdc "$m" > "$dst" ;;
        *.ko.gz)  dst=${dst%.gz};  gzip -dc "$m" > "$dst" ;;
        *)        cp "$m" "$dst" ;;
    esac
    echo "${dst#"$root"}" >> "$root/etc/vm/modules"
done

[ -r /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$root/etc/"
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
ln -s /proc/self/mounts "$root/etc/mtab"
echo "$KVER" > "$root/etc/vm/kver"
install -m 755 "$HERE/guest-init.sh" "$root/init"
# A console node lets the kernel give /init its stdio (needs root; /init
# also reopens /dev/console from devtmpfs, so failure here is harmless).
mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true

mkdir -p "$BLOCKGATE_VM_CACHE"
find "$root" -exec touch -h -d @0 {} +   # fixed mtimes: reproducible image
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
     cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -n -6 > "$OUT.$$.tmp"
mv "$OUT.$$.tmp" "$OUT"
echo "$stamp" > "$OUT.stamp.$$" && mv "$OUT.stamp.$$" "$OUT.stamp"
vm_log "built $OUT ($(du -h "$OUT" | cut -f1), kernel $KVER, modules: $(echo "$mods" | grep -c . || true))"
printf '%s\n' "$OUT"
