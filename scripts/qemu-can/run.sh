#!/usr/bin/env bash
# Run one test binary inside a throw-away QEMU guest that has a real Linux CAN stack (can, can-raw,
# can-dev, vcan, slcan modules loaded; /dev/pts for slcan over a pseudo-terminal) and an interface
# vcan0 up, then exit with the binary's exit code.
#
# Usage: scripts/qemu-can/run.sh TEST_BINARY [ARGS...]
#
# The binary may be an ordinary dynamically linked executable: it is copied into a busybox initramfs
# together with the shared libraries `ldd` lists. The guest console streams to stdout; the guest's
# /init prints `LOCOD-QEMU-EXIT <code>` after the binary exits and that code becomes ours.
#
# Exit codes: the guest binary's code; 124 guest timed out; 125 no exit marker (guest crashed or the
# kernel panicked); 2 usage or set-up problem (run scripts/qemu-can/setup.sh first).
#
# Environment:
#   LOCOD_CACHE          cache root used by setup.sh (default: $HOME/.cache/locod)
#   LOCOD_QEMU_TIMEOUT   wall-clock limit in seconds for the whole guest run (default: 180)
#   LOCOD_QEMU_MEM       guest memory (default: 512M)
#   LOCOD_QEMU_LOG       also write the guest console to this file
#
# TCG only: KVM hung on the machines this was written on, and CAN behaviour does not need it.
set -euo pipefail

CACHE="${LOCOD_CACHE:-$HOME/.cache/locod}/qemu-can"
PATHS="$CACHE/paths.env"
TIMEOUT_S="${LOCOD_QEMU_TIMEOUT:-180}"
MEM="${LOCOD_QEMU_MEM:-512M}"
MARKER="LOCOD-QEMU-EXIT"

log() { printf 'qemu-can run: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

[ $# -ge 1 ] || die "usage: $0 TEST_BINARY [ARGS...]"
bin="$1"
shift
[ -f "$bin" ] && [ -x "$bin" ] || die "$bin is not an executable file"
[ -f "$PATHS" ] || die "$PATHS missing: run scripts/qemu-can/setup.sh first"
# shellcheck source=/dev/null
. "$PATHS"
[ -f "$QEMU_CAN_KERNEL" ] || die "kernel $QEMU_CAN_KERNEL missing: run scripts/qemu-can/setup.sh again"
command -v qemu-system-x86_64 >/dev/null 2>&1 || die "qemu-system-x86_64 not found: run scripts/qemu-can/setup.sh"
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] && ! ldd "$BUSYBOX" >/dev/null 2>&1 \
    || die "$BUSYBOX is missing or not static: install busybox-static (scripts/qemu-can/setup.sh)"

work="$(mktemp -d "${TMPDIR:-/tmp}/locod-qemu-can.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,test,lib/modules/qemu-can}

# busybox and its applets are installed by /init (`busybox --install -s`).
cp "$BUSYBOX" "$root/bin/busybox"
mods=""
for m in $QEMU_CAN_MODULES; do
    [ -f "$m" ] || die "module $m missing: run scripts/qemu-can/setup.sh again"
    cp "$m" "$root/lib/modules/qemu-can/"
    mods+=" $(basename "$m" .ko)"
done

# The test binary, stripped of debug info if we can (smaller initramfs, faster TCG boot).
name="$(basename "$bin")"
if command -v strip >/dev/null 2>&1; then
    strip --strip-debug -o "$root/test/$name" "$bin"
else
    cp "$bin" "$root/test/$name"
fi
# Its shared libraries at the same absolute paths, including the ELF interpreter.
if ldd "$bin" >/dev/null 2>&1; then
    ldd "$bin" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' | sort -u |
        while read -r lib; do
            mkdir -p "$root$(dirname "$lib")"
            cp -L "$lib" "$root$lib"
        done
fi

# The guest's /init. Arguments are quoted by bash's printf %q, which busybox ash reads back.
args=""
for a in "$@"; do args+=" $(printf '%q' "$a")"; done
cat >"$root/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
finish() {
    echo "$MARKER \$1"
    sync
    # With -no-reboot a reset ends QEMU; this works whether or not the firmware offers ACPI power-off.
    reboot -f
    sleep 10
}
for m in$mods; do
    insmod /lib/modules/qemu-can/\$m.ko || { echo "qemu-can: insmod \$m failed"; finish 3; }
done
ip link add dev vcan0 type vcan || { echo "qemu-can: cannot create vcan0"; finish 3; }
ip link set vcan0 up || { echo "qemu-can: cannot bring vcan0 up"; finish 3; }
cd /test
export RUST_BACKTRACE=1
echo "qemu-can: guest ready, running $name"
./$(printf '%q' "$name")$args
finish \$?
EOF
chmod +x "$root/init"

(cd "$root" && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null) | gzip -1 >"$work/initramfs.gz"

bios=()
if [ -f /usr/share/qemu/qboot.rom ]; then
    bios=(-bios /usr/share/qemu/qboot.rom) # boots faster than the default SeaBIOS
fi

log "booting $(basename "$QEMU_CAN_KERNEL") from $QEMU_CAN_KERNEL_PKG with $name (timeout ${TIMEOUT_S}s)"
console="$work/console.log"
start=$(date +%s.%N)
set +e
timeout --kill-after=5 "$TIMEOUT_S" qemu-system-x86_64 \
    -accel tcg "${bios[@]}" -vga none -nic none -nographic -no-reboot \
    -m "$MEM" -smp 1 \
    -kernel "$QEMU_CAN_KERNEL" -initrd "$work/initramfs.gz" \
    -append "console=ttyS0 quiet panic=-1" </dev/null 2>&1 | tee "$console"
qemu_rc=${PIPESTATUS[0]}
set -e
end=$(date +%s.%N)
[ -z "${LOCOD_QEMU_LOG:-}" ] || cp "$console" "$LOCOD_QEMU_LOG"
elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')

if [ "$qemu_rc" -eq 124 ] || [ "$qemu_rc" -eq 137 ]; then
    log "guest timed out after ${TIMEOUT_S}s"
    exit 124
fi
code="$(tr -d '\r' <"$console" | grep -a -o "$MARKER [0-9]*" | tail -n1 | awk '{print $2}')"
if [ -z "$code" ]; then
    log "no '$MARKER' line from the guest (qemu exit $qemu_rc after ${elapsed}s)"
    exit 125
fi
log "guest exit code $code after ${elapsed}s"
exit "$code"
