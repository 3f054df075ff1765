#!/usr/bin/env bash
# The one test command: installs what the tests need, builds, runs every test.
# Usage: scripts/test.sh [path-prefix ...]   e.g. scripts/test.sh dist/protocol dist/relay/log.test.js
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --test
npx tsc -p tsconfig.json
if [ "$#" -gt 0 ]; then
  mapfile -t files < <(find "$@" -name '*.test.js' | sort)
else
  mapfile -t files < <(find dist -name '*.test.js' -not -path 'dist/bench/*' | sort)
fi
# The timeout is a hang guard for a whole test file, not a speed target: a fault-injection file
# runs 20-cycle loops for ~1 min idle and took over 180 s under npm run test:load's stress-ng.
# Three files at once on 2 cores: most of a file's time is waiting on its processes (a fresh clone,
# idle: 529 s at 3, 608 s at 2, 2026-12-07).
exec node --test --test-timeout="${GHOSTPIPE_TEST_TIMEOUT_MS:-600000}" --test-concurrency="${GHOSTPIPE_TEST_CONCURRENCY:-3}" "${files[@]}"
