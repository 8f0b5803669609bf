#!/usr/bin/env bash
# The README's first command: on a fresh machine (as root), install what
# blockgate and its NBD client tools need, build, and run the gateway on the
# embedded default: config.example.yaml serves a 1 GiB demo volume (a sparse
# file under var/) at nbd://127.0.0.1:10809/demo, with its admin socket at the
# default path, so a plain `blockgate status` finds it. Ctrl-C stops it cleanly.
#
# Node: the pinned LTS from scripts/install-node.sh (the machine's own node is
# left alone). `blockgate` on PATH: /usr/local/bin/blockgate, a two-line
# launcher written here that runs this checkout's bin/blockgate on that Node
# (written only where no other blockgate is; BLOCKGATE_LAUNCHER=path moves it,
# BLOCKGATE_LAUNCHER= skips it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)
bash scripts/install-deps.sh
node_prefix=$(bash scripts/install-node.sh)
export PATH="$node_prefix/bin:$PATH" npm_config_nodedir="$node_prefix"
if [ ! -d node_modules ]; then npm ci --no-audit --no-fund; fi
npm run build

# The launcher carries a marker line so a later run may replace it, and
# nothing else (another blockgate install) is overwritten.
launcher=${BLOCKGATE_LAUNCHER-/usr/local/bin/blockgate}
marker='# blockgate launcher written by scripts/demo.sh'
blockgate="$node_prefix/bin/node $repo/bin/blockgate"   # what to type when no launcher
if [ -n "$launcher" ]; then
    if [ -e "$launcher" ] && ! grep -qxF "$marker" "$launcher" 2>/dev/null; then
        echo "demo: $launcher exists and is not ours; left alone" >&2
    elif { printf '#!/bin/sh\n%s\n# for %s\nexec %q %q "$@"\n' "$marker" "$repo" \
               "$node_prefix/bin/node" "$repo/bin/blockgate" > "$launcher.tmp" &&
           chmod 755 "$launcher.tmp" && mv -f "$launcher.tmp" "$launcher"; } 2>/dev/null; then
        case ":$PATH:" in *":$(dirname "$launcher"):"*) blockgate=blockgate ;; *) blockgate=$launcher ;; esac
    else
        rm -f "$launcher.tmp"
        echo "demo: cannot write $launcher (not root?)" >&2
    fi
fi

cat >&2 <<MSG

blockgate is starting on nbd://127.0.0.1:10809/demo (Node $(node --version)). In another terminal:
  $blockgate status
  nbdinfo nbd://127.0.0.1:10809/demo
  nbdcopy some.img nbd://127.0.0.1:10809/demo
  modprobe nbd && nbd-client 127.0.0.1 10809 /dev/nbd0 -N demo   # kernel client, where the host has nbd.ko

MSG
exec "$node_prefix/bin/node" bin/blockgate serve --config config.example.yaml --log-format text
