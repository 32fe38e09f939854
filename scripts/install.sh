#!/usr/bin/env bash
# `make install`: lays out a self-contained tree for a robot under $DESTDIR$PREFIX from a robot
# build of locod (built with LOCOD_RPATH='$ORIGIN/../lib', see build.rs):
#
#   bin/locod                                  the daemon (no simulator, no MuJoCo)
#   lib/*.so*                                  the libtorch it links, and what libtorch links
#   lib/systemd/system/locod.service           the unit, its paths pointing into PREFIX
#   lib/systemd/network/80-can.network         can0 at 1 Mbit/s (systemd-networkd)
#   lib/udev/rules.d/99-locod.rules            stable serial names, FTDI latency
#   share/locod/config/                        example configurations and the field zenoh files
#   share/locod/models/biwheel/                the learned controller the robot configuration names
#   share/doc/locod/                           README.md, systemd/README.md
#
# Nothing outside DESTDIR$PREFIX is written; systemd/README.md says what to link or copy into /etc.
# usage: install.sh BINARY PREFIX [DESTDIR]    (LIBTORCH: a libtorch tree instead of the venv's torch)
set -euo pipefail
bin=${1:?usage: install.sh BINARY PREFIX [DESTDIR]}
prefix=${2:?usage: install.sh BINARY PREFIX [DESTDIR]}
destdir=${3:-}
case "$prefix" in
  /*) ;;
  *) echo "install: PREFIX must be an absolute path, got '$prefix'" >&2; exit 2 ;;
esac
prefix=${prefix%/}
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$destdir$prefix"

if [ -n "${LIBTORCH:-}" ]; then
  torch_lib="$LIBTORCH/lib"
else
  torch_lib=$(python3 -c 'import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec("torch").origin), "lib"))')
fi
[ -d "$torch_lib" ] || { echo "install: no libtorch at $torch_lib (set LIBTORCH, or run scripts/setup-python.sh)" >&2; exit 1; }

install -d "$dest/bin" "$dest/lib" "$dest/lib/systemd/system" "$dest/lib/systemd/network" \
  "$dest/lib/udev/rules.d" "$dest/share/locod/config/zenoh" "$dest/share/locod/models/biwheel" \
  "$dest/share/doc/locod"
install -m 755 "$bin" "$dest/bin/locod"

# Every shared library the binary loads from outside the system's library directories: libtorch,
# and through libtorch's own rpaths whatever it carries (libgomp, and with a CUDA build of torch the
# CUDA libraries). They land side by side in lib/, where the binary's rpath ($ORIGIN/../lib) finds
# libtorch and libtorch's ($ORIGIN) finds the rest.
resolved=$(LD_LIBRARY_PATH="$torch_lib" ldd "$bin")
if grep -q "not found" <<<"$resolved"; then
  echo "install: $bin needs libraries that are not found next to $torch_lib:" >&2
  grep "not found" <<<"$resolved" >&2
  exit 1
fi
n=0
while read -r name path; do
  case "$path" in
    /lib/* | /lib64/* | /usr/lib/* | /usr/lib64/*) continue ;;
  esac
  install -m 644 "$(readlink -f "$path")" "$dest/lib/$name"
  n=$((n + 1))
done < <(awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' <<<"$resolved")
echo "install: $n libraries from $torch_lib and its dependencies into $dest/lib ($(du -sh "$dest/lib" | cut -f1))" >&2

# The unit runs the installed binary; the configuration stays in /etc/locod (the robot's own).
sed -e "s#/opt/locod#$prefix#g" "$root/systemd/locod.service" >"$dest/lib/systemd/system/locod.service"
chmod 644 "$dest/lib/systemd/system/locod.service"
install -m 644 "$root"/systemd/network/*.network "$dest/lib/systemd/network/"
install -m 644 "$root"/systemd/udev/*.rules "$dest/lib/udev/rules.d/"

# Example configurations: the real robot's, and the in-memory test stand's (a first run without
# hardware). The model path is made absolute, so a copy in /etc/locod still finds the model.
for c in biwheel-hardware.toml biwheel.toml; do
  sed -e "s#\"\\.\\./models/#\"$prefix/share/locod/models/#g" "$root/config/$c" >"$dest/share/locod/config/$c"
  chmod 644 "$dest/share/locod/config/$c"
done
install -m 644 "$root"/config/zenoh/field-*.json5 "$dest/share/locod/config/zenoh/"
install -m 644 "$root/models/biwheel/student.pt" "$root/models/biwheel/student.md" "$dest/share/locod/models/biwheel/"
install -m 644 "$root/README.md" "$dest/share/doc/locod/README.md"
install -m 644 "$root/systemd/README.md" "$dest/share/doc/locod/systemd.md"
echo "install: locod in $dest (PREFIX $prefix); next steps: $prefix/share/doc/locod/systemd.md" >&2
