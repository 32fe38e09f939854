#!/usr/bin/env bash
# Prepare everything scripts/qemu-can/run.sh needs to boot a real Linux CAN stack under QEMU:
# qemu-system-x86 and busybox-static on the host (apt), and a Debian kernel plus its CAN modules
# unpacked into a cache directory (the kernel package is downloaded, never installed on the host).
#
# Idempotent: a second run with everything in place does nothing but print the recorded paths.
#
# Environment:
#   LOCOD_CACHE            cache root (default: $HOME/.cache/locod); files go to $LOCOD_CACHE/qemu-can/
#   LOCOD_QEMU_KERNEL_PKG  kernel package to use (default: newest linux-image-6.1.0-N-amd64; the
#                          -cloud flavour has no CAN and the -rt flavour is not what we deploy on)
#
# Output: $LOCOD_CACHE/qemu-can/paths.env, a shell fragment defining QEMU_CAN_KERNEL and QEMU_CAN_MODULES
# (the modules in load order: can can-raw can-dev vcan slcan), sourced by run.sh.
set -euo pipefail

CACHE="${LOCOD_CACHE:-$HOME/.cache/locod}/qemu-can"
PATHS="$CACHE/paths.env"
# Load order matters: vcan and slcan need can-dev, can-raw needs can. slcan (the Lawicel driver that
# USB-CAN adapters like CANable use) gives the guest a CAN device whose transmit queue can fill.
MODULE_NAMES=(can can-raw can-dev vcan slcan)

log() { printf 'qemu-can setup: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

# 1. Host tools.
need_pkgs=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need_pkgs+=(qemu-system-x86)
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx cpio || need_pkgs+=(busybox-static)
# busybox-static replaces busybox; make sure the one we copy into the guest is the static one.
if [ -x /bin/busybox ] && ldd /bin/busybox >/dev/null 2>&1; then need_pkgs+=(busybox-static); fi
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    log "installing ${need_pkgs[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_pkgs[@]}" \
        || { as_root apt-get update && as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends "${need_pkgs[@]}"; }
fi

# 2. Kernel and modules (skip if already recorded and present).
if [ -f "$PATHS" ]; then
    # shellcheck source=/dev/null
    . "$PATHS"
    ok=1
    [ -f "${QEMU_CAN_KERNEL:-/nonexistent}" ] || ok=0
    for m in ${QEMU_CAN_MODULES:-/nonexistent}; do [ -f "$m" ] || ok=0; done
    for name in "${MODULE_NAMES[@]}"; do
        case " ${QEMU_CAN_MODULES:-} " in *"/$name.ko "*) ;; *) ok=0 ;; esac
    done
    if [ "$ok" -eq 1 ] && { [ -z "${LOCOD_QEMU_KERNEL_PKG:-}" ] || [ "$LOCOD_QEMU_KERNEL_PKG" = "${QEMU_CAN_KERNEL_PKG:-}" ]; }; then
        log "already set up ($QEMU_CAN_KERNEL_PKG)"
        cat "$PATHS"
        exit 0
    fi
fi

pkg="${LOCOD_QEMU_KERNEL_PKG:-}"
if [ -z "$pkg" ]; then
    pkg="$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' | awk '{print $1}' | sort -V | tail -n1)"
    if [ -z "$pkg" ]; then
        as_root apt-get update >/dev/null
        pkg="$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' | awk '{print $1}' | sort -V | tail -n1)"
    fi
    [ -n "$pkg" ] || die "no linux-image-6.1.0-*-amd64 package in the apt sources (is this Debian 12?)"
fi
case "$pkg" in *cloud*) die "$pkg is a -cloud kernel, which is built without CAN" ;; esac

mkdir -p "$CACHE"
work="$(mktemp -d "$CACHE/.work.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log "downloading $pkg (about 70 MB)"
# apt-get download writes into the current directory; as root it warns about the unsandboxed download.
(cd "$work" && apt-get download "$pkg" 2>&1 | grep -v -e '^W: Download is performed unsandboxed' >&2 || true)
deb="$(ls "$work"/*.deb 2>/dev/null | head -n1)"
[ -n "$deb" ] || die "apt-get download $pkg produced no .deb"

log "extracting kernel and CAN modules"
dest="$CACHE/$pkg"
rm -rf "$dest"
mkdir -p "$dest"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work" --wildcards \
    './boot/vmlinuz-*' \
    './lib/modules/*/kernel/net/can/can.ko*' \
    './lib/modules/*/kernel/net/can/can-raw.ko*' \
    './lib/modules/*/kernel/drivers/net/can/dev/can-dev.ko*' \
    './lib/modules/*/kernel/drivers/net/can/vcan.ko*' \
    './lib/modules/*/kernel/drivers/net/can/slcan/slcan.ko*'
cp "$work"/boot/vmlinuz-* "$dest/vmlinuz"

modules=()
for name in "${MODULE_NAMES[@]}"; do
    src="$(find "$work/lib/modules" -name "$name.ko" -o -name "$name.ko.xz" -o -name "$name.ko.zst" | head -n1)"
    [ -n "$src" ] || die "$pkg has no $name module"
    # busybox insmod reads plain .ko only; decompress here so the guest needs no decompressor.
    case "$src" in
        *.ko.xz) xz -dc "$src" >"$dest/$name.ko" ;;
        *.ko.zst) zstd -qdc "$src" >"$dest/$name.ko" ;;
        *) cp "$src" "$dest/$name.ko" ;;
    esac
    modules+=("$dest/$name.ko")
done

cat >"$PATHS.tmp" <<EOF
QEMU_CAN_KERNEL_PKG='$pkg'
QEMU_CAN_KERNEL='$dest/vmlinuz'
QEMU_CAN_MODULES='${modules[*]}'
EOF
mv "$PATHS.tmp" "$PATHS"
# Remove other kernels unpacked by earlier runs.
find "$CACHE" -mindepth 1 -maxdepth 1 -type d -name 'linux-image-*' ! -name "$pkg" -exec rm -rf {} +
log "done"
cat "$PATHS"
