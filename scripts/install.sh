#!/usr/bin/env bash
# Installs Ghost Pipe on a Debian host or a Raspberry Pi OS gateway (docs/DEPLOY.md "Installing").
#
#   scripts/install.sh [--role relay|agent|receiver]... [--release FILE] [--root DIR] [--no-enable]
#   scripts/install.sh --uninstall [--purge] [--root DIR]
#
# Node.js 24 from the npm package node-linux-<arch> when the system has no Node >= 20; Ghost Pipe as
# a release in /opt/ghostpipe/releases/<version> with /opt/ghostpipe/current pointing at it (the
# tarball FILE, or one scripts/build-release.sh builds from this checkout; the release before it is
# kept, older ones removed); one system user per role (systemd-sysusers), the units, /etc/ghostpipe/<role>.yaml
# from the examples (an existing file is never overwritten), /usr/local/bin/ghostpipe, the roles'
# units enabled (not started; for the agent also ghostpipe-release.path, self-update). Running it
# again changes nothing that is already right.
# --uninstall removes all of that but /etc/ghostpipe (configs, keys) and /var/lib/ghostpipe (state);
# --purge removes those and the users too. --root installs into another root file system (an
# image, a test), without starting anything. Default roles: relay and agent (a gateway).
#
# GHOSTPIPE_NODE_TARBALL=FILE uses that node-linux-<arch> package tarball instead of fetching one.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
NODE_VERSION=24.21.0
ROOT=""
ROLES=()
UNINSTALL=0
PURGE=0
ENABLE=1
RELEASE=""

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }
usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --role) [ $# -ge 2 ] || usage; case "$2" in relay|agent|receiver) ROLES+=("$2");; *) die "--role: $2 is not relay, agent or receiver";; esac; shift 2;;
    --root) [ $# -ge 2 ] || usage; ROOT="$(cd "$2" && pwd)"; shift 2;;
    --release) [ $# -ge 2 ] || usage; [ -f "$2" ] || die "--release: no file $2"; RELEASE="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift 2;;
    --uninstall) UNINSTALL=1; shift;;
    --purge) PURGE=1; shift;;
    --no-enable) ENABLE=0; shift;;
    -h|--help) usage;;
    *) die "unknown option $1 (--help)";;
  esac
done
[ "$PURGE" = 0 ] || [ "$UNINSTALL" = 1 ] || die "--purge goes with --uninstall"
[ "${#ROLES[@]}" -gt 0 ] || ROLES=(relay agent)
[ "$(id -u)" = 0 ] || die "run as root (it creates system users and installs units)"
OPT="$ROOT/opt/ghostpipe"
UNITS="$ROOT/etc/systemd/system"
ALL_UNITS=(ghostpipe-relay.service ghostpipe-agent.service ghostpipe-receiver.service ghostpipe-audit.service ghostpipe-audit.timer ghostpipe-release.path ghostpipe-release.service)
SYSTEMCTL=(systemctl); [ -n "$ROOT" ] && SYSTEMCTL=(systemctl --root="$ROOT")

if [ "$UNINSTALL" = 1 ]; then
  for u in "${ALL_UNITS[@]}"; do
    if [ -f "$UNITS/$u" ]; then
      [ -n "$ROOT" ] || systemctl stop "$u" 2>/dev/null || true
      "${SYSTEMCTL[@]}" disable "$u" >/dev/null 2>&1 || true
      rm -f "$UNITS/$u"
    fi
  done
  rm -rf "$OPT" "$ROOT/usr/lib/sysusers.d/ghostpipe.conf"
  [ -L "$ROOT/usr/local/bin/ghostpipe" ] && rm -f "$ROOT/usr/local/bin/ghostpipe"
  [ -n "$ROOT" ] || systemctl daemon-reload 2>/dev/null || true
  if [ "$PURGE" = 1 ]; then
    rm -rf "$ROOT/etc/ghostpipe" "$ROOT/var/lib/ghostpipe"
    for user in ghostpipe-relay ghostpipe-agent ghostpipe-receiver; do
      if grep -q "^$user:" "$ROOT/etc/passwd" 2>/dev/null; then
        if [ -n "$ROOT" ]; then userdel --root "$ROOT" "$user"; else userdel "$user"; fi
      fi
    done
    say "removed Ghost Pipe, its configs, keys, state and users"
  else
    say "removed Ghost Pipe; kept /etc/ghostpipe (configs, keys) and /var/lib/ghostpipe (state): --purge removes them"
  fi
  exit 0
fi

# ---- Node.js ------------------------------------------------------------------------------------
node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ -x "$ROOT/usr/bin/node" ] && [ "$(node_major "$ROOT/usr/bin/node")" -ge 20 ]; then
  say "Node.js $("$ROOT/usr/bin/node" --version) already installed"
else
  case "$(uname -m)" in x86_64) arch=x64;; aarch64|arm64) arch=arm64;; *) die "no Node.js package for $(uname -m)";; esac
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  tarball="${GHOSTPIPE_NODE_TARBALL:-}"
  if [ -z "$tarball" ]; then
    command -v npm >/dev/null 2>&1 || die "no Node.js and no npm: install Node.js 24 first, or set GHOSTPIPE_NODE_TARBALL"
    (cd "$tmp" && npm pack "node-linux-$arch@$NODE_VERSION" --loglevel=error >/dev/null) || die "npm pack node-linux-$arch@$NODE_VERSION failed"
    tarball="$(ls "$tmp"/node-linux-*.tgz)"
  fi
  tar -xzf "$tarball" -C "$tmp" package/bin/node || die "$tarball: no package/bin/node"
  install -D -m 0755 "$tmp/package/bin/node" "$ROOT/usr/bin/node"
  mkdir -p "$ROOT/usr/share/doc/node-linux"
  "$ROOT/usr/bin/node" --version > "$ROOT/usr/share/doc/node-linux/VERSION" 2>/dev/null || echo "v$NODE_VERSION" > "$ROOT/usr/share/doc/node-linux/VERSION"
  say "Node.js $(cat "$ROOT/usr/share/doc/node-linux/VERSION") installed from the npm package node-linux-$arch"
fi

# ---- Ghost Pipe: /opt/ghostpipe/releases/<version>, /opt/ghostpipe/current -> it ----------------------
work="$(mktemp -d)"; trap 'rm -rf "$work" "${tmp:-}"' EXIT
if [ -z "$RELEASE" ]; then
  say "building a release from this checkout (scripts/build-release.sh)"
  RELEASE="$(bash "$REPO/scripts/build-release.sh" --out "$work")" || die "scripts/build-release.sh failed"
fi
top="$(tar -tzf "$RELEASE" | awk -F/ 'NR == 1 { print $1 }')"
version="${top#ghostpipe-}"
[ "$top" != "$version" ] && [ -n "$version" ] || die "$RELEASE: not a release tarball (its folder is $top, not ghostpipe-<version>)"
mkdir -p "$OPT/releases"
# A host installed before releases had the tree in /opt/ghostpipe itself: it goes (configs and state live elsewhere).
if [ -e "$OPT/dist" ] && [ ! -L "$OPT/current" ]; then
  find "$OPT" -mindepth 1 -maxdepth 1 ! -name releases -exec rm -rf {} +
  say "moved from the old layout (/opt/ghostpipe/dist) to releases"
fi
previous="$(readlink "$OPT/current" 2>/dev/null | sed -n 's#^releases/##p' || true)"
tar -xzf "$RELEASE" --no-same-owner -C "$work" "$top"
[ -f "$work/$top/RELEASE.json" ] && [ -f "$work/$top/dist/cli/ghostpipe.js" ] || die "$RELEASE: no RELEASE.json or dist/cli/ghostpipe.js"
rm -rf "$OPT/releases/.$version.old"; [ -d "$OPT/releases/$version" ] && mv "$OPT/releases/$version" "$OPT/releases/.$version.old"
mv "$work/$top" "$OPT/releases/$version"; rm -rf "$OPT/releases/.$version.old"
ln -sfn "releases/$version" "$OPT/.current.new" && mv -T "$OPT/.current.new" "$OPT/current"
# Keep the release before this one (a switch back by hand: ln -sfn releases/<old> current); drop older ones.
for r in "$OPT/releases"/*; do
  name="$(basename "$r")"; [ "$name" = "$version" ] || [ "$name" = "$previous" ] || rm -rf "$r"
done
mkdir -p "$ROOT/usr/local/bin"; ln -sfn /opt/ghostpipe/current/dist/cli/ghostpipe.js "$ROOT/usr/local/bin/ghostpipe"
say "Ghost Pipe $version in /opt/ghostpipe/releases/$version (current)${previous:+; $previous kept}"

# ---- users, units, configs ---------------------------------------------------------------------------
mkdir -p "$ROOT/usr/lib/sysusers.d" "$ROOT/etc"
{
  echo "# Ghost Pipe: one system user per role (written by scripts/install.sh; systemd-sysusers(8))."
  for role in "${ROLES[@]}"; do echo "u ghostpipe-$role - \"Ghost Pipe $role\" /var/lib/ghostpipe/$role /usr/sbin/nologin"; done
  for role in "${ROLES[@]}"; do [ "$role" = agent ] && echo "m ghostpipe-agent dialout"; done
  # Keep users of roles installed before (running it again for another role must not drop them).
  [ -f "$ROOT/usr/lib/sysusers.d/ghostpipe.conf" ] && grep '^u ghostpipe-' "$ROOT/usr/lib/sysusers.d/ghostpipe.conf" || true
} | awk '!seen[$0]++' > "$ROOT/usr/lib/sysusers.d/ghostpipe.conf.new"
mv "$ROOT/usr/lib/sysusers.d/ghostpipe.conf.new" "$ROOT/usr/lib/sysusers.d/ghostpipe.conf"
if [ -n "$ROOT" ]; then systemd-sysusers --root="$ROOT" >/dev/null; else systemd-sysusers >/dev/null; fi

mkdir -p "$UNITS"
for u in "${ALL_UNITS[@]}"; do install -m 0644 "$REPO/systemd/$u" "$UNITS/$u"; done
[ -n "$ROOT" ] || systemctl daemon-reload 2>/dev/null || true

uid_of() { awk -F: -v u="$1" '$1 == u { print $3 }' "$ROOT/etc/passwd"; }
gid_of() { awk -F: -v g="$1" '$1 == g { print $3 }' "$ROOT/etc/group"; }
install -d -m 0755 "$ROOT/etc/ghostpipe"
for role in "${ROLES[@]}"; do
  conf="$ROOT/etc/ghostpipe/$role.yaml"
  if [ -e "$conf" ]; then
    say "/etc/ghostpipe/$role.yaml exists: kept as it is"
  else
    install -m 0640 -o 0 -g "$(gid_of "ghostpipe-$role")" "$REPO/config/$role.example.yaml" "$conf"
    say "/etc/ghostpipe/$role.yaml written from config/$role.example.yaml: edit it"
  fi
done
for role in "${ROLES[@]}"; do
  [ "$role" = agent ] || continue
  for d in keys secrets; do
    [ -d "$ROOT/etc/ghostpipe/$d" ] || install -d -m 0700 -o "$(uid_of ghostpipe-agent)" -g "$(gid_of ghostpipe-agent)" "$ROOT/etc/ghostpipe/$d"
  done
done

if [ "$ENABLE" = 1 ]; then
  for role in "${ROLES[@]}"; do "${SYSTEMCTL[@]}" enable "ghostpipe-$role.service" >/dev/null 2>&1 || die "systemctl enable ghostpipe-$role failed"; done
  # Self-update waits for the agent's requests (it does nothing until firmware.release is configured).
  for role in "${ROLES[@]}"; do [ "$role" != agent ] || "${SYSTEMCTL[@]}" enable ghostpipe-release.path >/dev/null 2>&1 || die "systemctl enable ghostpipe-release.path failed"; done
fi

cat <<EOF

Installed: ${ROLES[*]} (units enabled: $([ "$ENABLE" = 1 ] && echo yes || echo no); nothing started).
Next:
EOF
for role in "${ROLES[@]}"; do
  case "$role" in
    relay) echo "  relay:    edit /etc/ghostpipe/relay.yaml; systemctl start ghostpipe-relay; the operator key is written to its operatorKeyFile (docs/RELAY.md)";;
    agent) echo "  agent:    ghostpipe keygen --type device --out /etc/ghostpipe/keys --name gw01; edit /etc/ghostpipe/agent.yaml (relay, API key, taps);"
           echo "            ghostpipe enroll --config /etc/ghostpipe/agent.yaml; systemctl start ghostpipe-agent (docs/AGENT.md)";;
    receiver) echo "  receiver: edit /etc/ghostpipe/receiver.yaml; systemctl start ghostpipe-receiver (docs/RECEIVER.md)";;
  esac
done
