#!/usr/bin/env bash
# `make run`: the simulator (`locod sim`) and the daemon (`locod run`) on one configuration, two
# processes that share only the pseudo-terminals the configuration names ([[bus]] device of the
# slcan bus, [bridge] port).
#
# The daemon starts once the simulator has linked every port (loading the MuJoCo model can take
# seconds on a busy machine). The simulator runs in its own session, so a Ctrl-C at the terminal
# reaches the daemon only: it damps the motors for [safety] shutdown_damp_ms while the simulated
# motors still answer, exits, and then the simulator is stopped.
#
# usage: run-sim.sh CONFIG [locod run arguments...]
#   LOCOD: the locod binary (default target/release/locod); PORT_WAIT_S: how long to wait for the
#   ports (default 60).
set -uo pipefail
config=${1:?usage: run-sim.sh CONFIG [locod run arguments...]}
shift
locod=${LOCOD:-./target/release/locod}
wait_s=${PORT_WAIT_S:-60}

# The ports, read as the simulator reads them (sim/realtime.rs port_paths).
mapfile -t ports < <(python3 - "$config" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    c = tomllib.load(f)
for bus in c.get("bus", []):
    if bus.get("kind") == "slcan" and "device" in bus:
        print(bus["device"])
if "bridge" in c:
    print(c["bridge"]["port"])
EOF
)
if [ ${#ports[@]} -eq 0 ]; then
  echo "locod: $config names no simulator ports (an slcan [[bus]] device, a [bridge] port)" >&2
  exit 2
fi
# A link a killed simulator left behind would look like a port that is ready.
for p in "${ports[@]}"; do
  [ -L "$p" ] && rm -f "$p"
done

setsid "$locod" sim --config "$config" &
sim=$!
stop_sim() {
  kill -TERM "$sim" 2>/dev/null
  wait "$sim" 2>/dev/null
}
trap stop_sim EXIT
trap 'exit 130' INT TERM HUP

deadline=$((SECONDS + wait_s))
for p in "${ports[@]}"; do
  until [ -e "$p" ]; do
    if ! kill -0 "$sim" 2>/dev/null; then
      wait "$sim"
      echo "locod: the simulator exited (status $?) before it linked $p" >&2
      trap - EXIT
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "locod: the simulator did not link $p within ${wait_s} s" >&2
      exit 1
    fi
    sleep 0.05
  done
done

# From here Ctrl-C (SIGINT to the terminal's process group) stops the daemon, and this script
# outlives it to stop the simulator.
trap 'true' INT TERM
"$locod" run --config "$config" "$@"
status=$?
stop_sim
trap - EXIT
exit "$status"
