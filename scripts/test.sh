#!/usr/bin/env bash
# `npm test`: the whole suite (or the vitest filters/options given as
# arguments: `npm test -- test/vm`), from a fresh clone of this machine kind.
#   1. Debian peers via scripts/install-deps.sh (needs root or sudo). A
#      failure there is a warning locally (the tests that need a missing peer
#      skip) and fatal under CI=true (where such tests throw instead).
#   2. `npm ci` when node_modules is missing or does not match
#      package-lock.json; then `npm run build` and `npm run typecheck` (tests drive dist/ through
#      bin/blockgate).
#   3. vitest with the default reporter (humans) and the JSON reporter
#      (test-results/vitest.json), TMPDIR pointing at a private dir: each
#      entry the tests leave in it counts as one failure (listed).
# Node is the pinned LTS from scripts/install-node.sh (installed when missing).
# Ends with the plain line "N passed, N failed" (errors outside tests, such as
# a test file that fails to load, count as failures) and exits non-zero on any
# failure or when no test ran. BLOCKGATE_SKIP_DEPS=1 skips step 1.
# `npm run test:unit` is this script with BLOCKGATE_TEST_TIER=unit: no Debian
# peers, no Ceph, no root, no VM (vitest.unit.config.ts), same Node and line.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

case "${CI:-}" in ""|0|false|FALSE|False) ci=false ;; *) ci=true ;; esac
say() { printf 'test.sh: %s\n' "$*" >&2; }
# Before the runner starts, any failure is one failure.
abort() { say "$*"; echo "0 passed, 1 failed"; exit 1; }

# Node: the pinned LTS (scripts/install-node.sh) first on PATH, so npm, the
# build, vitest and every child the tests spawn (process.execPath or `node`)
# run on it, and the native addon builds against its headers.
node_prefix=$(bash scripts/install-node.sh) || abort "installing Node.js failed (scripts/install-node.sh)"
export PATH="$node_prefix/bin:$PATH" npm_config_nodedir="$node_prefix"

# nbdsh and python3-libnbd are Debian's: they need /usr/bin/python3, while a
# pyenv (or other) python3 may come first on PATH. Put only python3 first, not
# all of /usr/bin, so no other tool changes under the tests.
sysbin=$(mktemp -d)
trap 'rm -rf "$sysbin"' EXIT
if [ -x /usr/bin/python3 ]; then
    ln -s /usr/bin/python3 "$sysbin/python3"
    PATH="$sysbin:$PATH"
fi
# The tools run e2fsck, debugfs, modprobe... from sbin, also for non-root users.
for d in /usr/local/sbin /usr/sbin /sbin; do
    case ":$PATH:" in *":$d:"*) ;; *) PATH="$PATH:$d" ;; esac
done
export PATH

# 1. Debian peers.
tier=${BLOCKGATE_TEST_TIER:-all}
case "$tier" in all) vitest_config=vitest.config.ts ;; unit) vitest_config=vitest.unit.config.ts ;; *) abort "BLOCKGATE_TEST_TIER must be all or unit, not '$tier'" ;; esac
if [ "${BLOCKGATE_SKIP_DEPS:-0}" != 1 ] && [ "$tier" = all ]; then
    if [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then
        if ! bash scripts/install-deps.sh; then
            $ci && abort "installing Debian peers failed (scripts/install-deps.sh)"
            say "warning: installing Debian peers failed; tests that need a missing one will skip"
        fi
    else
        $ci && abort "not root and no passwordless sudo: cannot install Debian peers"
        say "warning: not root: Debian peers not installed (run scripts/install-deps.sh as root)"
    fi
fi

# 2. node_modules as package-lock.json says (npm keeps the installed tree in
# node_modules/.package-lock.json; optional packages for other platforms are
# absent from it by design), then the build.
lock_matches() {
    node -e '
      const fs = require("fs");
      const lock = JSON.parse(fs.readFileSync("package-lock.json", "utf8")).packages ?? {};
      const have = JSON.parse(fs.readFileSync("node_modules/.package-lock.json", "utf8")).packages ?? {};
      for (const [k, v] of Object.entries(lock)) {
        if (k === "") continue;
        const h = have[k];
        if (!h) { if (v.optional || v.devOptional && process.env.NODE_ENV === "production") continue; process.exit(1); }
        if (h.version !== v.version) process.exit(1);
      }
      for (const k of Object.keys(have)) if (!(k in lock)) process.exit(1);
    ' 2>/dev/null
}
if [ ! -d node_modules ] || ! lock_matches; then
    say "node_modules missing or out of date with package-lock.json: npm ci"
    npm ci --no-audit --no-fund || abort "npm ci failed"
fi
npm run build || abort "npm run build failed"
# The tests are TypeScript too: vitest strips their types without checking
# them, so a test calling an API that changed would only fail at run time.
npm run typecheck || abort "npm run typecheck failed (sources and tests: tsconfig.test.json)"

# 3. The suite, with a private TMPDIR (short: unix socket paths under it must
# fit in 108 bytes). Tests make every temp file under os.tmpdir(); whatever is
# left there after the run is counted as a failure and listed, then removed.
mkdir -p test-results
json=$(mktemp "test-results/vitest-XXXXXX.json")
testtmp=$(mktemp -d /tmp/blockgate-test.XXXXXX) || abort "mktemp -d /tmp/blockgate-test.XXXXXX failed"
exit_trap=$(trap -p EXIT)
if [ -n "$exit_trap" ]; then
    eval "${exit_trap/#trap -- \'/trap -- \'rm -rf \"\$testtmp\"; }"
else
    trap 'rm -rf "$testtmp"' EXIT
fi
TMPDIR="$testtmp" node_modules/.bin/vitest run --config "$vitest_config" --reporter=default --reporter=json --outputFile="$json" "$@" < /dev/null
rc=$?
read -r passed failed < <(node -e '
  let r;
  try { r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); } catch { console.log("0 -1"); process.exit(0); }
  // A test file that failed to load or errored outside its tests has
  // status "failed" with no failed test in it: count it as one failure.
  const suiteErrors = (r.testResults ?? []).filter((f) => f.status === "failed" &&
    !(f.assertionResults ?? []).some((a) => a.status === "failed")).length;
  console.log(`${r.numPassedTests ?? 0} ${(r.numFailedTests ?? 0) + suiteErrors}`);
' "$json")
if [ "$failed" = -1 ]; then
    say "vitest wrote no JSON report (exit $rc)"
    failed=1
    rm -f "$json"
else
    mv -f "$json" test-results/vitest.json && say "JSON report moved to test-results/vitest.json"
fi
if [ "$rc" != 0 ] && [ "$failed" = 0 ]; then
    say "vitest exited $rc with no failed test counted (no test file matched, or an error outside the tests): counting 1 failure"
    failed=1
fi
leftovers=$(find "$testtmp" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort)
if [ -n "$leftovers" ]; then
    n=$(printf '%s\n' "$leftovers" | wc -l)
    say "the tests left $n entries in their TMPDIR ($testtmp), each counted as a failure:"
    printf '%s\n' "$leftovers" | sed 's/^/test.sh:   leftover: /' >&2
    failed=$((failed + n))
fi
rm -rf "$testtmp"
if [ "$passed" = 0 ] && [ "$failed" = 0 ]; then
    say "no test ran"
fi
echo "$passed passed, $failed failed"
[ "$rc" = 0 ] && [ "$failed" = 0 ] && [ "$passed" -gt 0 ]
