#!/usr/bin/env bash
# Checks a built Ghost Pipe Pi image without booting it and without mounting anything:
# partition table (sfdisk), FAT contents (mtools), ext4 contents (debugfs), then — when
# binfmt_misc runs arm64 binaries here — the image's own /usr/bin/node and Ghost Pipe in a chroot
# of an extracted copy (keygen into a scratch dir, `agent --check` of the seeded config).
# Usage: pi-image/verify.sh [IMAGE]   (default: pi-image/out/ghostpipe-pi3bplus-arm64.img)
# Exit 0 = every check passed; prints one line per check.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
IMG="${1:-$HERE/out/ghostpipe-pi3bplus-arm64.img}"
[ -f "$IMG" ] || { echo "verify.sh: no image at $IMG (run build.sh)" >&2; exit 2; }
for t in sfdisk mdir mtype debugfs file dd; do
  command -v "$t" >/dev/null || { echo "verify.sh: missing tool $t (apt-get install fdisk mtools e2fsprogs file)" >&2; exit 2; }
done
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
fails=0; n=0
ok()   { n=$((n+1)); printf 'ok   %s\n' "$*"; }
bad()  { n=$((n+1)); fails=$((fails+1)); printf 'FAIL %s\n' "$*"; }
check() { local what="$1"; shift; if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi; }

# ---- partition table -------------------------------------------------------------------------
sfdisk -d "$IMG" > "$TMP/pt" 2>/dev/null || { bad "MBR partition table readable"; exit 1; }
label=$(awk '/^label:/ {print $2}' "$TMP/pt"); diskid=$(awk '/^label-id:/ {print $2}' "$TMP/pt")
[ "$label" = dos ] && ok "partition table: MBR (dos), disk id $diskid" || bad "partition table is $label, want dos"
p() { grep "^$IMG$1 " "$TMP/pt"; }
start1=$(p 1 | sed -E 's/.*start= *([0-9]+).*/\1/'); size1=$(p 1 | sed -E 's/.*size= *([0-9]+).*/\1/')
start2=$(p 2 | sed -E 's/.*start= *([0-9]+).*/\1/'); size2=$(p 2 | sed -E 's/.*size= *([0-9]+).*/\1/')
p 1 | grep -q 'type=c' && p 1 | grep -q bootable && ok "p1: FAT32 LBA (type c), bootable, $((size1/2048)) MiB at sector $start1" || bad "p1 is not a bootable type-c partition"
p 2 | grep -q 'type=83' && ok "p2: Linux (type 83), $((size2/2048)) MiB at sector $start2" || bad "p2 is not type 83"
[ -z "$(grep -E "^$IMG[3-9]" "$TMP/pt")" ] && ok "no third partition (no swap partition)" || bad "extra partitions: $(grep -cE "^$IMG[3-9]" "$TMP/pt")"
[ $((start1 % 2048)) = 0 ] && [ $((start2 % 2048)) = 0 ] && ok "partitions 1 MiB aligned" || bad "partitions not 1 MiB aligned"
pid="${diskid#0x}"

# ---- boot partition (FAT) ------------------------------------------------------------------
dd if="$IMG" of="$TMP/boot.vfat" bs=512 skip="$start1" count="$size1" status=none
export MTOOLS_SKIP_CHECK=1
mdir -b -i "$TMP/boot.vfat" ::/ > "$TMP/fat.ls" 2>/dev/null || bad "FAT file system readable"
fat_has() { grep -qi "^::/$1\$" "$TMP/fat.ls"; }
for f in bootcode.bin start.elf fixup.dat config.txt cmdline.txt vmlinuz initrd.img bcm2837-rpi-3-b-plus.dtb; do
  fat_has "$f" && ok "FAT: $f" || bad "FAT: $f missing"
done
mtype -i "$TMP/boot.vfat" ::/config.txt > "$TMP/config.txt" 2>/dev/null
mtype -i "$TMP/boot.vfat" ::/cmdline.txt > "$TMP/cmdline.txt" 2>/dev/null
check "config.txt: arm_64bit=1" grep -qx 'arm_64bit=1' "$TMP/config.txt"
check "config.txt: kernel=vmlinuz, initramfs initrd.img" sh -c "grep -qx 'kernel=vmlinuz' '$TMP/config.txt' && grep -q '^initramfs initrd.img' '$TMP/config.txt'"
check "config.txt: device_tree=bcm2837-rpi-3-b-plus.dtb" grep -qx 'device_tree=bcm2837-rpi-3-b-plus.dtb' "$TMP/config.txt"
check "cmdline.txt: one line, root=PARTUUID=$pid-02" sh -c "[ \$(wc -l < '$TMP/cmdline.txt') -le 1 ] && grep -q 'root=PARTUUID=$pid-02 ' '$TMP/cmdline.txt'"
mcopy -i "$TMP/boot.vfat" ::/vmlinuz "$TMP/vmlinuz" 2>/dev/null
kfile=$(file -b "$TMP/vmlinuz"); case "$kfile" in
  *gzip*) zcat "$TMP/vmlinuz" > "$TMP/Image" 2>/dev/null; kfile="gzip of: $(file -b "$TMP/Image")";; esac
echo "$kfile" | grep -q 'ARM64\|aarch64' && ok "FAT: vmlinuz is an arm64 kernel ($kfile)" || bad "FAT: vmlinuz is not an arm64 kernel ($kfile)"
mcopy -i "$TMP/boot.vfat" ::/bcm2837-rpi-3-b-plus.dtb "$TMP/pi.dtb" 2>/dev/null
file -b "$TMP/pi.dtb" | grep -q 'Device Tree' && grep -aq 'raspberrypi,3-model-b-plus' "$TMP/pi.dtb" \
  && ok "FAT: dtb is a device tree for raspberrypi,3-model-b-plus" || bad "FAT: dtb is not the 3B+ device tree"

# ---- root partition (ext4) -------------------------------------------------------------------
dd if="$IMG" of="$TMP/root.ext4" bs=1M iflag=skip_bytes,count_bytes skip=$((start2*512)) count=$((size2*512)) conv=sparse status=none
R="$TMP/root.ext4"
dbg() { debugfs -R "$1" "$R" 2>/dev/null; }
dumpf() { debugfs -R "dump -p $1 $2" "$R" >/dev/null 2>&1; }
dbg stats | grep -q 'Filesystem volume name:' && ok "ext4: $(dbg stats | awk -F': *' '/volume name/ {print "label " $2} ')" || bad "ext4 file system readable"
exists() { dbg "stat $1" | grep -q '^Inode:'; }
mode_of() { dbg "stat $1" | sed -nE 's/.*Mode: +0?([0-7]{3,4}).*/\1/p' | head -1; }
uid_of() { dbg "stat $1" | sed -nE 's/.*User: +([0-9]+) +Group: +([0-9]+).*/\1:\2/p' | head -1; }
link_of() { dbg "stat $1" | sed -nE 's/^Fast link dest: "(.*)"/\1/p'; }

dumpf /usr/bin/node "$TMP/node"
nf=$(file -b "$TMP/node" 2>/dev/null)
echo "$nf" | grep -q 'ELF 64-bit LSB.*ARM aarch64' && ok "/usr/bin/node: ${nf%%,*}, ARM aarch64 ($(stat -c %s "$TMP/node") bytes, mode $(mode_of /usr/bin/node))" || bad "/usr/bin/node is not an aarch64 ELF: $nf"
# The release layout (docs/DEPLOY.md section 7): current -> releases/<version>, a complete release there.
cur_link=$(link_of /opt/ghostpipe/current)
[[ "$cur_link" =~ ^releases/[0-9A-Za-z.+-]+$ ]] && ok "/opt/ghostpipe/current -> $cur_link" || bad "/opt/ghostpipe/current is not a link to releases/<version>: '$cur_link'"
CUR="/opt/ghostpipe/$cur_link"
[ "$(link_of /usr/local/bin/ghostpipe)" = /opt/ghostpipe/current/dist/cli/ghostpipe.js ] && ok "/usr/local/bin/ghostpipe -> current" || bad "/usr/local/bin/ghostpipe does not point into current"
for f in "$CUR/dist/cli/ghostpipe.js" "$CUR/package.json" "$CUR/package-lock.json" "$CUR/RELEASE.json" /opt/ghostpipe/BUILD-INFO "$CUR/node_modules/pino/package.json"; do
  exists "$f" && ok "present: $f" || bad "missing: $f"
done
dbg "ls -l $CUR/node_modules/@serialport/bindings-cpp/prebuilds/linux-arm64" | grep -q 'armv8.glibc.node' \
  && ok "@serialport/bindings-cpp: linux-arm64 glibc prebuild present" || bad "@serialport/bindings-cpp: no linux-arm64 glibc prebuild"
for u in ghostpipe-relay.service ghostpipe-agent.service ghostpipe-receiver.service ghostpipe-audit.service ghostpipe-release.service ghostpipe-release.path; do
  exists "/etc/systemd/system/$u" && ok "unit installed: $u" || bad "unit missing: $u"
done
l=$(link_of /etc/systemd/system/multi-user.target.wants/ghostpipe-release.path); [ -n "$l" ] && ok "enabled: ghostpipe-release.path -> $l (self-update)" || bad "not enabled: ghostpipe-release.path"
exists /usr/lib/systemd/system/ghostpipe-keygen.service && ok "unit installed: ghostpipe-keygen.service (first boot)" || bad "unit missing: ghostpipe-keygen.service"
# The agent runs node without a JIT under W^X (docs/AGENT.md, "Memory"): both node lines carry --jitless.
dumpf /etc/systemd/system/ghostpipe-agent.service "$TMP/agent.service"
if grep -qx 'MemoryDenyWriteExecute=yes' "$TMP/agent.service" && grep -q '^ExecStartPre=/usr/bin/node --jitless ' "$TMP/agent.service" && grep -q '^ExecStart=/usr/bin/node --jitless ' "$TMP/agent.service"; then
  ok "ghostpipe-agent.service: node --jitless (ExecStartPre and ExecStart) with MemoryDenyWriteExecute=yes"
else bad "ghostpipe-agent.service: expected --jitless on both node lines and MemoryDenyWriteExecute=yes"; fi
W=/etc/systemd/system/multi-user.target.wants
for u in ghostpipe-relay ghostpipe-agent ghostpipe-keygen systemd-networkd; do
  l=$(link_of "$W/$u.service"); [ -n "$l" ] && ok "enabled: $u.service -> $l" || bad "not enabled: $u.service"
done
l=$(link_of /etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service)
[ -n "$l" ] && ok "enabled (sysinit.target): systemd-timesyncd.service -> $l" || bad "not enabled: systemd-timesyncd.service"
for u in ghostpipe-receiver ghostpipe-audit ssh; do
  l=$(link_of "$W/$u.service"); [ -z "$l" ] && ok "not enabled on the gateway: $u.service" || echo "note $u.service enabled -> $l"
done
check "ghostpipe-keygen.service required by ghostpipe-agent.service" exists /etc/systemd/system/ghostpipe-agent.service.requires/ghostpipe-keygen.service
for m in swap.target dphys-swapfile.service; do
  [ "$(link_of /etc/systemd/system/$m)" = /dev/null ] && ok "masked: $m" || bad "not masked: $m"
done
dumpf /usr/lib/sysusers.d/ghostpipe.conf "$TMP/sysusers"; dumpf /etc/passwd "$TMP/passwd"; dumpf /etc/group "$TMP/group"
check "sysusers.d/ghostpipe.conf declares both users" sh -c "grep -q '^u ghostpipe-agent ' '$TMP/sysusers' && grep -q '^u ghostpipe-relay ' '$TMP/sysusers'"
for u in ghostpipe-agent ghostpipe-relay; do
  line=$(grep "^$u:" "$TMP/passwd"); [ -n "$line" ] && ok "passwd: $line" || bad "passwd: no $u"
done
grep -q '^dialout:.*ghostpipe-agent' "$TMP/group" && ok "group: ghostpipe-agent in dialout" || bad "group: ghostpipe-agent not in dialout"
agent_uid=$(awk -F: '$1=="ghostpipe-agent" {print $3":"$4}' "$TMP/passwd")
[ "$(mode_of /etc/ghostpipe/keys)" = 700 ] && [ "$(uid_of /etc/ghostpipe/keys)" = "$agent_uid" ] && ok "/etc/ghostpipe/keys: 0700 ghostpipe-agent" || bad "/etc/ghostpipe/keys: mode $(mode_of /etc/ghostpipe/keys) owner $(uid_of /etc/ghostpipe/keys)"
[ "$(mode_of /etc/ghostpipe/secrets)" = 700 ] && ok "/etc/ghostpipe/secrets: 0700" || bad "/etc/ghostpipe/secrets: mode $(mode_of /etc/ghostpipe/secrets)"
for y in agent relay; do
  [ "$(mode_of /etc/ghostpipe/$y.yaml)" = 640 ] && ok "/etc/ghostpipe/$y.yaml: 0640 owner $(uid_of /etc/ghostpipe/$y.yaml)" || bad "/etc/ghostpipe/$y.yaml: mode $(mode_of /etc/ghostpipe/$y.yaml)"
done
# No private key may be in the image: key folders empty, no ssh host keys, no PEM/OpenSSH private
# key anywhere under /etc, /root, /home, /var, /opt, /usr/local (extracted with debugfs rdump).
[ -z "$(dbg 'ls /etc/ghostpipe/keys' | tr -s ' ' '\n' | grep -vE '^$|^\.{1,2}$|^\(?[0-9]+\)?$')" ] && ok "/etc/ghostpipe/keys is empty (keys are made on first boot)" || bad "/etc/ghostpipe/keys is not empty"
[ -z "$(dbg 'ls /etc/ghostpipe/secrets' | tr -s ' ' '\n' | grep -vE '^$|^\.{1,2}$|^\(?[0-9]+\)?$')" ] && ok "/etc/ghostpipe/secrets is empty" || bad "/etc/ghostpipe/secrets is not empty"
dbg 'ls /etc/ssh' | grep -q 'ssh_host_' && bad "ssh host keys baked into the image" || ok "no ssh host keys in /etc/ssh"
mkdir -p "$TMP/x"
for d in etc root home var opt usr/local; do exists "/$d" && debugfs -R "rdump /$d $TMP/x" "$R" >/dev/null 2>&1; done
priv=$(grep -rlIE -- '-----BEGIN ([A-Z0-9]+ )?PRIVATE KEY-----' "$TMP/x" 2>/dev/null | sed "s#^$TMP/x#/…#")
if [ -z "$priv" ]; then ok "no PEM/OpenSSH private key under /etc /root /home /var /opt /usr/local"
else
  # Library test fixtures in node_modules and the published examples in Ghost Pipe's own docs
  # are reported, not fatal; anything else is a key baked into the image.
  allowed='/node_modules/|^/…/opt/ghostpipe/releases/[^/]+/docs/'
  other=$(echo "$priv" | grep -vE "$allowed" || true)
  echo "note private-key-looking text in library fixtures / docs examples: $(echo "$priv" | grep -cE "$allowed") files ($(echo "$priv" | grep -E "$allowed" | grep -v node_modules | tr '\n' ' '))"
  [ -z "$other" ] && ok "no private key outside node_modules fixtures and docs examples" || bad "private keys in the image: $other"
fi
[ "$(dbg 'stat /etc/machine-id' | sed -nE 's/.*Size: ([0-9]+).*/\1/p' | head -1)" = 0 ] && ok "/etc/machine-id empty (set on first boot)" || bad "/etc/machine-id is not empty"
dumpf /etc/fstab "$TMP/fstab"
check "fstab: / is PARTUUID=$pid-02 ext4" grep -qE "^PARTUUID=$pid-02 +/ +ext4" "$TMP/fstab"
check "fstab: /boot/firmware is PARTUUID=$pid-01 vfat" grep -qE "^PARTUUID=$pid-01 +/boot/firmware +vfat" "$TMP/fstab"
grep -vE '^\s*#' "$TMP/fstab" | grep -qw swap && bad "fstab has a swap entry" || ok "fstab: no swap"
exists /swapfile && bad "/swapfile exists" || ok "no /swapfile"
dumpf /etc/systemd/journald.conf.d/ghostpipe.conf "$TMP/journald"
check "journald: Storage=volatile, RuntimeMaxUse set" sh -c "grep -qx 'Storage=volatile' '$TMP/journald' && grep -q '^RuntimeMaxUse=' '$TMP/journald'"
dumpf /etc/ssh/sshd_config.d/10-ghostpipe.conf "$TMP/sshd"
check "sshd: PasswordAuthentication no" grep -qx 'PasswordAuthentication no' "$TMP/sshd"
k=$(dbg 'ls /lib/modules' | tr -s ' ' '\n' | grep -E '^[0-9]+\.' | head -1)
[ -n "$k" ] && ok "kernel modules: /lib/modules/$k" || bad "no /lib/modules"

# ---- optional: run the image's arm64 node + Ghost Pipe under qemu-user ----------------------
if grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 || [ "$(uname -m)" = aarch64 ]; then
  C="$TMP/chroot"; mkdir -p "$C"
  debugfs -R "rdump / $C" "$R" >/dev/null 2>&1
  # debugfs rdump keeps modes but not the symlinked /lib, /bin etc. when it lacks permission; check.
  if [ -x "$C/usr/bin/node" ] && [ -e "$C/lib/ld-linux-aarch64.so.1" ]; then
    v=$(chroot "$C" /usr/bin/node -p 'process.version + " " + process.arch + " openssl " + process.versions.openssl' 2>&1)
    echo "$v" | grep -q '^v24\..* arm64 ' && ok "image node runs (qemu-user): $v" || bad "image node does not run: $v"
    chroot "$C" /usr/bin/node -e 'const c=require("node:crypto"); c.generateKeyPairSync("ml-dsa-65"); c.generateKeyPairSync("ml-kem-768")' >/dev/null 2>&1 \
      && ok "image node: native ML-DSA-65 and ML-KEM-768 (OpenSSL 3.5)" || bad "image node: no native ML-DSA/ML-KEM"
    mkdir -p "$C/tmp/vk"
    out=$(chroot "$C" /usr/bin/node /opt/ghostpipe/current/dist/cli/ghostpipe.js keygen --type device --out /tmp/vk/keys 2>&1)
    if echo "$out" | grep -q '^did: did:ghostpipe:'; then
      modes=$(stat -c '%n %a' "$C"/tmp/vk/keys/* | sed "s#$C##" | tr '\n' ' ')
      echo "$modes" | grep -q 'device.sign.key 600' && ok "ghostpipe keygen in the image (scratch dir, not kept): $modes" || bad "keygen modes: $modes"
    else bad "ghostpipe keygen failed in the image: $out"; fi
    # The agent's protocol libraries load in the image's node without a JIT, as the unit runs it.
    out=$(cd "$C" && chroot "$C" /usr/bin/node --jitless -e "for (const m of ['node-opcua-client', 'mqtt', 'modbus-serial', 'pino']) require('/opt/ghostpipe/current/node_modules/' + m); console.log('ok')" 2>&1)
    echo "$out" | grep -qx ok && ok "image node --jitless loads node-opcua-client, mqtt, modbus-serial, pino" || bad "image node --jitless: $(echo "$out" | tail -2)"
    # agent --check with the seeded config, keys pointed at the scratch keys (the real ones do not exist yet).
    sed -e 's#/etc/ghostpipe/keys/device\.#/tmp/vk/keys/device.#g' "$C/etc/ghostpipe/agent.yaml" > "$C/tmp/vk/agent.yaml"
    out=$(chroot "$C" /usr/bin/node --jitless /opt/ghostpipe/current/dist/cli/ghostpipe.js agent --config /tmp/vk/agent.yaml --check 2>&1); rc=$?
    echo "note agent --check on the seeded agent.yaml (exit $rc): $(echo "$out" | head -3 | tr '\n' ' ' | cut -c1-300)"
    out=$(chroot "$C" /usr/bin/node -e "require('/opt/ghostpipe/current/node_modules/@serialport/bindings-cpp').autoDetect(); console.log('ok')" 2>&1)
    echo "$out" | grep -qx ok && ok "@serialport/bindings-cpp native addon loads on arm64" || bad "@serialport/bindings-cpp does not load: $(echo "$out" | tail -2)"
  else
    echo "note skipped the qemu-user run: extracted rootfs incomplete"
  fi
else
  echo "note skipped running the image's node: no qemu-aarch64 in binfmt_misc"
fi

echo "verify: $((n - fails))/$n checks passed${fails:+, $fails failed}"
[ "$fails" = 0 ]
