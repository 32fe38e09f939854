#!/usr/bin/env bash
# The real-time field check: `make run`'s two processes (scripts/run-sim.sh: the simulator and the
# daemon), driven over zenoh by `locod teleop --drive`, RUNS times. Each run: stand up, walk, the
# drive file's commands (config/drives/field.txt: 0.3 m/s forward for 20 s, a turn, then zero), for
# SECONDS of Walk; then Ctrl-C, as an operator would. Per run and in total it prints whether the
# robot stayed walking (a fault held by the balance fallback is listed, not a fall), the control
# tick's compute p99 (the daemon's own summary), the simulator's
# late physics steps, and from the simulator's ground truth (its status lines) the tilt and the
# base's drift over the last STILL seconds (the zero-command stand), and the tilt at its end.
#
# usage: field-check.sh [CONFIG] [RUNS] [DRIVE] [SECONDS] [STILL]
#   defaults: config/sim.toml 10 config/drives/field.txt 90 60. LOCOD: the binary
#   (target/release/locod). Logs and a JSON summary go to $OUT (default target/field-check/).
#   VIEWER=1 (the default) also runs the interactive `locod teleop` on a pseudo-terminal (util-linux
#   `script`), as an operator watching would; VIEWER=0 leaves it out.
set -uo pipefail
config=${1:-config/sim.toml}
runs=${2:-10}
drive=${3:-config/drives/field.txt}
seconds=${4:-90}
still=${5:-60}
locod=${LOCOD:-./target/release/locod}
out=${OUT:-target/field-check}
viewer=${VIEWER:-1}
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)

for i in $(seq 1 "$runs"); do
  log="$out/run$i.log"
  LOCOD="$locod" setsid "$here/run-sim.sh" "$config" >"$log" 2>&1 &
  group=$!
  if [ "$viewer" = 1 ]; then
    # The interactive client draws its view on a pseudo-terminal and is never typed at.
    setsid bash -c "sleep infinity | script -qfec '$locod teleop --config $config' /dev/null >/dev/null 2>&1" &
    view=$!
  fi
  "$locod" teleop --config "$config" --drive "$drive" --seconds "$seconds" --json >"$out/drive$i.json" 2>"$out/drive$i.err"
  # Ctrl-C at the terminal: SIGINT to the group (the simulator has its own session).
  kill -INT -- -"$group" 2>/dev/null
  wait "$group" 2>/dev/null
  if [ "$viewer" = 1 ]; then
    kill -TERM -- -"$view" 2>/dev/null
    wait "$view" 2>/dev/null
  fi
  python3 - "$log" "$out/drive$i.json" "$still" "$i" <<'PY'
import json, re, sys
log, drive_path, still, i = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
text = open(log, errors="replace").read()
try:
    drive = json.load(open(drive_path))
except Exception:
    drive = {"stayed_walking": False, "left_walk": "no drive report (see drive%s.err)" % i}
pose = [(float(t), float(x), float(y), float(tilt)) for t, x, y, tilt in re.findall(
    r"sim: t ([\d.]+) s \(x[\d.]+ real time\), base at \(([-\d.]+), ([-\d.]+), [-\d.]+\) m, tilt ([\d.]+) deg", text)]
m = re.search(r"^\s*compute\s+n=\d+ p50=([\d.]+)us p99=([\d.]+)us", text, re.M)
late = re.search(r"steps \((\d+) late\)", text)
stop = pose[-1][0] if pose else 0.0
window = [p for p in pose if p[0] >= stop - still]
r = {
    "run": int(i),
    "stayed_walking": bool(drive.get("stayed_walking")),
    "left_walk": drive.get("left_walk"),
    "first_fault": drive.get("first_fault"),
    "compute_p99_us": float(m.group(2)) if m else None,
    "late_sim_steps": int(late.group(1)) if late else None,
    "still_s": round(window[-1][0] - window[0][0], 1) if len(window) > 1 else 0.0,
    "still_tilt_max_deg": max(p[3] for p in window) if window else None,
    "still_tilt_end_deg": window[-1][3] if window else None,
    "still_drift_m": round(((window[-1][1] - window[0][1]) ** 2 + (window[-1][2] - window[0][2]) ** 2) ** 0.5, 3) if len(window) > 1 else None,
    "levels": drive.get("levels"),
}
print(json.dumps(r))
PY
done | tee "$out/runs.jsonl"

python3 - "$out/runs.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
up = sum(r["stayed_walking"] for r in rows)
def span(k):
    v = [r[k] for r in rows if r[k] is not None]
    return f"{min(v)} .. {max(v)}" if v else "n/a"
print(f"field check: {up}/{len(rows)} runs stayed walking; control compute p99 {span('compute_p99_us')} us; "
      f"late simulator steps {span('late_sim_steps')}; still: tilt max {span('still_tilt_max_deg')} deg, at the end {span('still_tilt_end_deg')} deg, drift {span('still_drift_m')} m")
for r in rows:
    if not r["stayed_walking"]:
        print(f"  run {r['run']}: {r['left_walk']}")
PY
