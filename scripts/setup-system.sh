#!/usr/bin/env bash
# Installs the Debian packages a target needs, once: `setup-system.sh build` (libudev's headers for
# the gamepad crate), `setup-system.sh bench` (cyclictest from rt-tests), `setup-system.sh test`
# (what the test suite runs against). Skips what is present; as root it uses apt-get directly,
# otherwise sudo.
set -euo pipefail
want=()
need() { command -v "$1" >/dev/null 2>&1 || want+=("$2"); }
need_pc() { pkg-config --exists "$1" 2>/dev/null || want+=("$2"); }
for target in "$@"; do
  case "$target" in
    build) need pkg-config pkg-config; need_pc libudev libudev-dev ;;
    bench) need cyclictest rt-tests ;;
    test) need systemd-analyze systemd; need openssl openssl ;;
    *) echo "setup-system: unknown target $target" >&2; exit 2 ;;
  esac
done
[ ${#want[@]} -eq 0 ] && exit 0
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "setup: installing ${want[*]} from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
