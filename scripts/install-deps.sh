#!/usr/bin/env bash
# Installs the Debian packages blockgate's tests, demo and benchmarks use,
# when any is missing. Idempotent; needs root (or sudo).
set -euo pipefail

PACKAGES=(
  g++ make python3                               # node-gyp: the native addon (native/build.mjs)
  nbdkit libnbd-bin python3-libnbd nbd-client   # NBD peers: nbdinfo, nbdcopy, nbdsh
  qemu-utils                                     # qemu-img, qemu-io, qemu-nbd
  fio                                            # benchmarks (nbd engine)
  gnutls-bin openssl                             # certtool, psktool for TLS tests
  qemu-system-x86 linux-image-amd64 busybox-static e2fsprogs kmod cpio gzip  # kernel-client VM tests
  socat                                          # VM tests: BLOCKGATE_VM_FWD=relay
  ceph-mon ceph-osd radosgw                      # single-node Ceph RGW (S3) for tests
  awscli                                         # benchmark peer: aws s3 cp
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# INITRD=No: the kernel package is only the VM tests' guest kernel; skip
# building a host initrd for it (saves ~30 s).
export DEBIAN_FRONTEND=noninteractive INITRD=No
$SUDO env DEBIAN_FRONTEND=noninteractive INITRD=No apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive INITRD=No apt-get install -y -q --no-install-recommends "${missing[@]}"
