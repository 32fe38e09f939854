#!/usr/bin/env bash
# The SimDist adaptation experiment in sim2sim (`make adapt`): the MPPI controller with the
# pretrained world model drives the "real world" of `locod eval --real-world` (the configured
# mass, friction, strength, latency and noise departures), its logs finetune the world model's
# dynamics at several data budgets (`locod finetune`), and every model is evaluated on seeds the
# collection never used. Writes OUT/table.md, OUT/adapt.json and OUT/adapt.png.
#
#   scripts/adapt.sh [CONFIG] [OUT]
#   BUDGETS="0 5 10 20 30"   minutes of collected data to finetune on (0 = the pretrained model)
#   SCENES="soft:forward flat:random slope:forward"
#                            evaluation scenes and their command profiles (`locod eval --commands`):
#                            forward progress on the foam floor and up the slippery slope (SimDist's
#                            two tasks), velocity tracking under random commands on the flat floor
#   EPISODES=20 EPISODE_SECONDS=20   evaluation episodes per model and scene, and their length
#   COLLECT_SCENE=soft       where the data is collected, with the scene's default commands
#                            (`locod eval`: forward on step, stairs and slope, random elsewhere);
#                            COLLECT_SCENE=slope collects on the task itself, as SimDist does
#   STUDENT_CONFIG=config/sim-student.toml, BC_BUDGETS="30"
#                            the baseline: the student finetuned by behaviour cloning on the same
#                            data (models/locod_train/bc_finetune.py) at these budgets, and the
#                            pretrained student, evaluated the same way
#
# Then the probe (models/locod_train/adapt_probe.py) on held-out episodes: why the largest budget's
# model did or did not plan differently. Writes OUT/probe.txt and OUT/probe.json.
#
# Resumable: a chunk of data, a finetuned model or an evaluation already in OUT is kept.
# Wall time on a 2-core machine: about 30 s per minute of data collected (MPPI in lock-step) and
# 3.5 min per 20-episode evaluation.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-config/sim-mppi.toml}
OUT=${2:-models/runs/adapt}
BUDGETS=${BUDGETS:-"0 5 10 20 30"}
SCENES=${SCENES:-"soft:forward flat:random slope:forward"}
EPISODES=${EPISODES:-20}
SECONDS_PER_EPISODE=${EPISODE_SECONDS:-20}   # not SECONDS: bash counts its own seconds in it
COLLECT_SCENE=${COLLECT_SCENE:-soft}
LOCOD=${LOCOD:-./target/release/locod}
STUDENT_CONFIG=${STUDENT_CONFIG:-config/sim-student.toml}
CHUNK_MIN=5
mkdir -p "$OUT"

# The configured world model, resolved against the configuration's directory.
model=$(sed -n 's/^model = "\(.*world_model[^"]*\.pt\)"/\1/p' "$CONFIG" | head -1)
[ -n "$model" ] || { echo "adapt: $CONFIG names no world model" >&2; exit 2; }
base=$(cd "$(dirname "$CONFIG")" && realpath "$model")
echo "adapt: pretrained world model $base"

# evaluate CONFIG PREFIX WHAT: every scene of SCENES into OUT/PREFIX_<scene>.json (kept if there).
evaluate() {
    local spec s commands e
    for spec in $SCENES; do
        s=${spec%%:*}
        commands=${spec#*:}
        [ "$commands" = "$spec" ] && commands=random
        e="$OUT/$2_$s.json"
        [ -s "$e" ] && continue
        echo "adapt: evaluating $3 on $s ($commands commands)"
        "$LOCOD" eval --config "$1" --real-world --scene "$s" --commands "$commands" --episodes "$EPISODES" \
            --seconds "$SECONDS_PER_EPISODE" --seed 5001 --json > "$e.tmp"
        mv "$e.tmp" "$e"
    done
}

max=0
for b in $BUDGETS; do [ "$b" -gt "$max" ] && max=$b; done
BC_BUDGETS=${BC_BUDGETS:-$max}
chunks=$(( (max + CHUNK_MIN - 1) / CHUNK_MIN ))
per_chunk=$(( CHUNK_MIN * 60 / SECONDS_PER_EPISODE ))
# 1. Data: 5-minute chunks of the pretrained controller on the collection scene, seeds 9000+.
for c in $(seq 1 "$chunks"); do
    dir="$OUT/data/chunk$c"
    [ -f "$dir/done" ] && continue
    rm -rf "$dir"
    mkdir -p "$dir"
    echo "adapt: collecting chunk $c of $chunks ($CHUNK_MIN min on $COLLECT_SCENE)"
    "$LOCOD" eval --config "$CONFIG" --real-world --scene "$COLLECT_SCENE" --episodes "$per_chunk" \
        --seconds "$SECONDS_PER_EPISODE" --seed $((9000 + 100 * c)) --log "$dir/logs" --json > "$dir/eval.json"
    touch "$dir/done"
done

# 2. Finetune at each budget, then 3. evaluate (seeds 5001.., never collected on).
for b in $BUDGETS; do
    wm="$base"
    if [ "$b" -gt 0 ]; then
        wm="$OUT/wm_${b}min.pt"
        if [ ! -f "$wm" ]; then
            data=()
            for c in $(seq 1 $(( (b + CHUNK_MIN - 1) / CHUNK_MIN ))); do data+=("$OUT/data/chunk$c/logs"); done
            echo "adapt: finetuning on $b min of data"
            "$LOCOD" finetune --config "$CONFIG" --model "$base" --data "${data[@]}" --out "$wm" --json \
                > "$OUT/finetune_${b}min.json"
        fi
        wm=$(realpath "$wm")
    fi
    cfg="$OUT/config_${b}min.toml"
    sed "s#^model = \".*world_model[^\"]*\\.pt\"#model = \"$wm\"#" "$CONFIG" \
        | sed "s#\"\\.\\./models/#\"$(realpath models)/#g" > "$cfg"
    evaluate "$cfg" "eval_${b}min" "the ${b}-minute model"
done

# 4. The baseline: the student, finetuned by behaviour cloning on the same data (its policy-rate
# export), and as pretrained, evaluated the same way.
student=$(sed -n 's/^model = "\(.*student[^"]*\.pt\)"/\1/p' "$STUDENT_CONFIG" | head -1)
[ -n "$student" ] || { echo "adapt: $STUDENT_CONFIG names no student" >&2; exit 2; }
student=$(cd "$(dirname "$STUDENT_CONFIG")" && realpath "$student")
for c in $(seq 1 "$chunks"); do
    ds="$OUT/data/chunk$c/policy"
    [ -f "$ds/meta/info.json" ] || "$LOCOD" export "$OUT/data/chunk$c/logs" --out "$ds" --format lerobot --rate policy
done
for b in 0 $BC_BUDGETS; do
    pol="$student"
    if [ "$b" -gt 0 ]; then
        pol="$OUT/student_bc_${b}min.pt"
        if [ ! -f "$pol" ]; then
            data=()
            for c in $(seq 1 $(( (b + CHUNK_MIN - 1) / CHUNK_MIN ))); do data+=("$(realpath "$OUT/data/chunk$c/policy")"); done
            echo "adapt: behaviour cloning the student on $b min of data"
            out_abs="$(realpath "$OUT")/student_bc_${b}min.pt"
            (cd models && ../.venv/bin/python -m locod_train.bc_finetune --student "$student" --data "${data[@]}" \
                --out "$out_abs") > "$OUT/bc_${b}min.json"
        fi
        pol=$(realpath "$pol")
    fi
    cfg="$OUT/student_config_${b}min.toml"
    sed "s#^model = \".*student[^\"]*\\.pt\"#model = \"$pol\"#" "$STUDENT_CONFIG" \
        | sed "s#\"\\.\\./models/#\"$(realpath models)/#g" > "$cfg"
    evaluate "$cfg" "bc_eval_${b}min" "the student (${b} min of behaviour cloning)"
done

# 5. Why it did or did not help: held-out episodes on the collection scene (seeds 9900..), never
# trained on, and the probe of the pretrained against the largest budget's model
# (models/locod_train/adapt_probe.py: latent error at the planner's horizon, plan ranking, what the
# frozen heads read before a fall).
if [ "$max" -gt 0 ] && [ ! -s "$OUT/probe.json" ]; then
    held="$OUT/data/heldout"
    if [ ! -f "$held/done" ]; then
        rm -rf "$held"
        mkdir -p "$held"
        echo "adapt: collecting held-out episodes for the probe (seeds 9900..)"
        "$LOCOD" eval --config "$CONFIG" --real-world --scene "$COLLECT_SCENE" --episodes "$per_chunk" \
            --seconds "$SECONDS_PER_EPISODE" --seed 9900 --log "$held/logs" --json > "$held/eval.json"
        "$LOCOD" export "$held/logs" --out "$held/policy" --format lerobot --rate policy
        touch "$held/done"
    fi
    echo "adapt: probing the pretrained model against the ${max}-minute one"
    probe_data=$(realpath "$held/policy")
    probe_ft=$(realpath "$OUT/wm_${max}min.pt")
    probe_eval=$(realpath "$held/eval.json")
    probe_out="$(realpath "$OUT")/probe.json.tmp"
    (cd models && ../.venv/bin/python -m locod_train.adapt_probe --data "$probe_data" --base "$base" \
        --finetuned "$probe_ft" --eval "$probe_eval" --json "$probe_out") | tee "$OUT/probe.txt"
    mv "$OUT/probe.json.tmp" "$OUT/probe.json"
fi

.venv/bin/python scripts/adapt_table.py "$OUT" $BUDGETS
