#!/usr/bin/env bash
# Brings what Ghost Pipe needs: npm packages always; with --test also the Debian
# packages the tests run as real peers (mosquitto MQTT 5 broker, socat for pty pairs), openssl
# (certificates, key interop) and python3 (its ctypes sets the kernel's W^X flag in
# test/helpers/wxorx.ts, as systemd's MemoryDenyWriteExecute does), systemd (systemd-analyze
# judges the units in test/deploy/units.test.ts; nothing is started), nginx and caddy (the shipped
# proxy configs run in test/deploy/proxies.test.ts), docker-compose (validates compose.yaml in
# test/deploy/container.test.ts; no container engine is needed or started).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
if [ "${1:-}" = "--test" ]; then
  missing=()
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
  command -v socat >/dev/null 2>&1 || missing+=(socat)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
  command -v caddy >/dev/null 2>&1 || missing+=(caddy)
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    # Packages such as nginx start their service on install (listening on every interface); the
    # tests start their own on loopback, so a policy-rc.d denies service starts during the install.
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      policy=/usr/sbin/policy-rc.d
      printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod 755 "$policy"
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ -z "$policy" ] || $SUDO rm -f "$policy"
  fi
fi
