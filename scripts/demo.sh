#!/usr/bin/env bash
# The README's first command: on a fresh machine (as root), install what
# blockgate and its NBD client tools need, build, and run the gateway on the
# embedded default: config.example.yaml serves a 1 GiB demo volume (a sparse
# file under var/) at nbd://127.0.0.1:10809/demo. Ctrl-C stops it cleanly.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-deps.sh
if [ ! -d node_modules ]; then npm ci --no-audit --no-fund; fi
npm run build
cat >&2 <<'MSG'

blockgate is starting on nbd://127.0.0.1:10809/demo. In another terminal:
  nbdinfo nbd://127.0.0.1:10809/demo
  nbdcopy some.img nbd://127.0.0.1:10809/demo
  modprobe nbd && nbd-client 127.0.0.1 10809 /dev/nbd0 -N demo   # kernel client, where the host has nbd.ko

MSG
exec node bin/blockgate serve --config config.example.yaml --log-format text
