#!/usr/bin/env bash
# Boots the built image in QEMU's Raspberry Pi 3B model (-M raspi3b: BCM2837, 1 GiB, SD card),
# with the image's own kernel, initramfs and device tree, under a strict timeout, and reports how
# far it got from the serial console. The image itself is never written: QEMU runs on a qcow2
# overlay (the raspi SD model also needs a power-of-two card size, which the overlay provides).
# Usage: pi-image/boot-test.sh [TIMEOUT_SECONDS=420]
# QEMU is not a Pi 3B+: no LAN7515 Ethernet, no Wi-Fi, a plain 3B device tree is used (the 3B+
# one expects hardware QEMU lacks), and TCG emulation is 10-50x slower than the real board.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="$HERE/out"
TIMEOUT="${1:-420}"
IMG="$OUT/ghostpipe-pi3bplus-arm64.img"
for f in "$IMG" "$OUT/vmlinuz" "$OUT/initrd.img" "$OUT/cmdline.txt"; do
  [ -f "$f" ] || { echo "boot-test.sh: missing $f (run build.sh)" >&2; exit 2; }
done
command -v qemu-system-aarch64 >/dev/null || { echo "boot-test.sh: apt-get install qemu-system-arm qemu-utils" >&2; exit 2; }
DTB="$OUT/bcm2837-rpi-3-b.dtb"; [ -f "$DTB" ] || DTB="$OUT/bcm2837-rpi-3-b-plus.dtb"
T="$OUT/boot-test"; rm -rf "$T"; mkdir -p "$T"
sz=$(stat -c %s "$IMG"); p=1; while [ $p -lt "$sz" ]; do p=$((p * 2)); done
qemu-img create -q -f qcow2 -F raw -b "$IMG" "$T/sd.qcow2" "$p" || exit 2
# The image's cmdline, with the consoles QEMU exposes (PL011 = ttyAMA0, mini UART = ttyS1).
append="$(sed -e 's/console=[^ ]*//g' "$OUT/cmdline.txt" | tr -s ' ') console=ttyAMA0,115200 console=ttyS1,115200 earlycon=pl011,0x3f201000"
echo "boot-test: qemu-system-aarch64 -M raspi3b, dtb $(basename "$DTB"), timeout ${TIMEOUT}s"
echo "boot-test: append: $append"
t0=$(date +%s)
timeout --signal=KILL "$TIMEOUT" nice -n 19 qemu-system-aarch64 -M raspi3b -m 1G -smp 4 \
  -kernel "$OUT/vmlinuz" -initrd "$OUT/initrd.img" -dtb "$DTB" -append "$append" \
  -drive if=sd,file="$T/sd.qcow2",format=qcow2 \
  -display none -monitor none -serial file:"$T/serial0.log" -serial file:"$T/serial1.log" \
  >"$T/qemu.log" 2>&1
rc=$?; t1=$(date +%s)
cat "$T/serial0.log" "$T/serial1.log" > "$T/console.log"
echo "boot-test: qemu ended after $((t1 - t0)) s (exit $rc; 137 = killed at the timeout)"
mark() { local l; l=$(grep -a -m1 -E "$2" "$T/console.log" | tr -d '\r' | cut -c1-150); if [ -n "$l" ]; then echo "  reached: $1 — $l"; else echo "  not reached: $1"; fi; }
mark "kernel started"              'Linux version'
mark "device tree machine"         'Machine model:'
mark "initramfs /init"             'Run /init as init process|Loading, please wait'
mark "SD card detected"            'mmcblk0: mmc0'
mark "root fs mounted"             'EXT4-fs \(mmcblk0p2\): mounted'
mark "systemd PID 1"               'systemd\[1\]: systemd [0-9]+|Welcome to'
mark "sysusers/tmpfiles"           'Create System Users|Create Volatile Files'
mark "ghostpipe-keygen (1st boot)" 'ghostpipe-keygen|Ghost Pipe first boot'
mark "ghostpipe-relay"             'Ghost Pipe RAM-only relay|ghostpipe-relay'
mark "multi-user target"           'Reached target.*Multi-User'
mark "login prompt"                'login:'
echo "boot-test: full console log: $T/console.log ($(wc -l < "$T/console.log") lines)"
grep -q 'Linux version' "$T/console.log"
