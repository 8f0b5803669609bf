#!/usr/bin/env bash
# Long SIGKILL loop for stored volumes (test/stored/kill-loop.test.ts with
# more cycles): every write acknowledged before the last completed flush must
# survive each kill. Usage: bench/stored-kill-loop.sh [CYCLES]  (default 200)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
npm run build >/dev/null
BLOCKGATE_KILL_CYCLES="${1:-200}" exec node_modules/.bin/vitest run test/stored/kill-loop.test.ts --testTimeout=86400000
