#!/usr/bin/env bash
# `npm start`: the one-command demo on a fresh machine. Installs what is missing (npm packages,
# Debian's mosquitto for the simulated plant's MQTT broker), builds, then runs
# `ghostpipe demo` (simulated plant + relay + agent + receiver, loopback only, state in .demo/).
# Extra arguments go to the demo, e.g. `npm start -- --interval 5s`. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules/node-opcua ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # The demo needs the dev dependencies too (node-opcua runs the plant's OPC-UA server).
  npm ci --no-audit --no-fund --include=dev
fi
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  echo "installing Debian package: mosquitto (the simulated plant's MQTT broker)" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
  # Debian starts a system-wide broker on port 1883; the demo runs its own on a free loopback port.
fi
npx tsc -p tsconfig.json
exec node dist/cli/ghostpipe.js demo "$@"
