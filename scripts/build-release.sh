#!/usr/bin/env bash
# Builds a Ghost Pipe release tarball from this checkout (docs/DEPLOY.md "Releases"):
#
#   scripts/build-release.sh [--version V] [--arch x64|arm64] [--out DIR]
#
# DIR/ghostpipe-<V>-linux-<arch>.tar.gz holds one folder, ghostpipe-<V>/: dist/ without tests and
# benchmarks, production node_modules for the target (native packages chosen for --arch, nothing
# compiled: --ignore-scripts), package.json, package-lock.json, docs, config examples, units, and
# RELEASE.json ({version, commit, arch}). It is what scripts/install.sh and the Pi image put under
# /opt/ghostpipe/releases/<V>, and what `ghostpipe firmware pack --install-type ghostpipe-release`
# ships to gateways. The last line printed is the tarball's path.
#
# Defaults: V = package.json's version, arch = this host's, DIR = ./release. Reproducible for a
# commit: file times clamped to SOURCE_DATE_EPOCH (default: the commit's time), sorted names,
# numeric owner 0, gzip without a name or time.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
VERSION=""
ARCH=""
OUT="$REPO/release"

die() { echo "build-release.sh: $*" >&2; exit 1; }
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --version) [ $# -ge 2 ] || usage; VERSION="$2"; shift 2;;
    --arch) [ $# -ge 2 ] || usage; case "$2" in x64|arm64) ARCH="$2";; *) die "--arch: $2 is not x64 or arm64";; esac; shift 2;;
    --out) [ $# -ge 2 ] || usage; mkdir -p "$2"; OUT="$(cd "$2" && pwd)"; shift 2;;
    -h|--help) usage;;
    *) die "unknown option $1 (--help)";;
  esac
done
[ -n "$VERSION" ] || VERSION="$(node -p 'require(process.argv[1]).version' "$REPO/package.json")"
# The firmware manifest's rule (semver 2.0.0, at most 64 characters); it also names a folder.
[[ "$VERSION" =~ ^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$ ]] && [ "${#VERSION}" -le 64 ] \
  || die "--version: $VERSION is not a semantic version (semver.org, at most 64 characters)"
host_arch() { case "$(uname -m)" in x86_64) echo x64;; aarch64|arm64) echo arm64;; *) die "no release for $(uname -m)";; esac; }
[ -n "$ARCH" ] || ARCH="$(host_arch)"
# GHOSTPIPE_COMMIT: for a tree that is not a git checkout (the Pi image builds from `git archive`).
COMMIT="${GHOSTPIPE_COMMIT:-$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)}"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)}"

if [ ! -f "$REPO/dist/cli/ghostpipe.js" ]; then
  echo "build-release.sh: building (npm ci, tsc)" >&2
  (cd "$REPO" && { [ -d node_modules ] || npm ci --no-audit --no-fund >/dev/null; } && npx tsc -p tsconfig.json) || die "the build failed"
fi
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
tree="$work/ghostpipe-$VERSION"
mkdir -p "$tree"
cp -a "$REPO/package.json" "$REPO/package-lock.json" "$REPO/LICENSE" "$REPO/README.md" "$tree/"
cp -a "$REPO/dist" "$REPO/docs" "$REPO/config" "$REPO/systemd" "$tree/"
rm -rf "$tree/dist/test" "$tree/dist/bench" "$tree/dist/.tsbuildinfo"
find "$tree/dist" \( -name '*.test.js' -o -name '*.test.js.map' \) -delete
chmod 0755 "$tree/dist/cli/ghostpipe.js"
if [ "$ARCH" = "$(host_arch)" ] && [ -d "$REPO/node_modules" ]; then
  # Same architecture: the checkout's packages, pruned to production (no network).
  cp -a "$REPO/node_modules" "$tree/"
  (cd "$tree" && npm prune --omit=dev --no-audit --no-fund --loglevel=error >/dev/null) || die "npm prune --omit=dev failed"
else
  # Another architecture: its optional native packages (serialport's prebuilds), nothing compiled.
  (cd "$tree" && npm ci --omit=dev --cpu="$ARCH" --os=linux --libc=glibc --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null) \
    || die "npm ci --omit=dev --cpu=$ARCH failed"
fi
printf '{\n  "version": "%s",\n  "commit": "%s",\n  "arch": "%s"\n}\n' "$VERSION" "$COMMIT" "$ARCH" > "$tree/RELEASE.json"

tarball="$OUT/ghostpipe-$VERSION-linux-$ARCH.tar.gz"
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime --owner=0 --group=0 --numeric-owner \
  -C "$work" -cf - "ghostpipe-$VERSION" | gzip -n -6 > "$tarball.tmp"
mv "$tarball.tmp" "$tarball"
echo "build-release.sh: ghostpipe $VERSION ($ARCH, commit ${COMMIT:0:12}): $(du -h "$tarball" | cut -f1) tarball, $(du -sh "$tree" | cut -f1) unpacked" >&2
echo "$tarball"
