#!/usr/bin/env bash
# Creates (once) the project's Python environment and points .venv at it.
#
# The environment lives in a stable cache directory keyed by the hash of models/requirements.txt,
# so a fresh clone on a machine that already built it takes a second, and a change of pins makes a
# new one. Override the cache root with LOCOD_CACHE.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
req="$root/models/requirements.txt"
key=$(sha256sum "$req" | cut -c1-12)
cache="${LOCOD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/locod}"
venv="$cache/venv-$key"
if [ ! -f "$venv/.complete" ]; then
  echo "setup: creating the Python environment $venv (torch is a ~4.7 GB download the first time)" >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -r "$req"
  touch "$venv/.complete"
fi
ln -sfn "$venv" "$root/.venv"
# MuJoCo for the simulator (cargo feature `sim`): mujoco-rs links against the wheel's libmujoco
# through a directory named lib/ (.cargo/config.toml points MUJOCO_DYNAMIC_LINK_DIR at it, and the
# binaries' rpath at the same place).
mj=$(ls "$venv"/lib/python3*/site-packages/mujoco/libmujoco.so.* 2>/dev/null | head -n1)
if [ -n "$mj" ]; then
  mkdir -p "$root/.mujoco/lib"
  ln -sfn "$mj" "$root/.mujoco/lib/libmujoco.so"
  ln -sfn "$mj" "$root/.mujoco/lib/$(basename "$mj")"
fi
