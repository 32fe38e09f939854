"""The adaptation experiment's table and plot from scripts/adapt.sh's outputs.

    python scripts/adapt_table.py OUT BUDGET...

Reads OUT/eval_<b>min_<scene>.json (`locod eval --json`, MPPI with the world model finetuned on b
minutes of data), OUT/finetune_<b>min.json (`locod finetune --json`), and for the baseline
OUT/bc_eval_<b>min_<scene>.json and OUT/bc_<b>min.json (the student after behaviour cloning on the
same data). Writes OUT/table.md, OUT/adapt.json and OUT/adapt.png (forward progress and velocity
tracking against minutes of data, SimDist's published figures beside them).
"""

import json
import re
import sys
from pathlib import Path

# SimDist (quadruped, real robot): forward progress before and after 36 minutes of real data.
PAPER = {"slope": (0.68, 1.81), "soft": (2.08, 3.0)}


def spread(report, key):
    s = report.get(key)
    return (s["mean"], s["min"], s["max"]) if s else None


def fmt(s, digits=2):
    return "-" if s is None else f"{s[0]:.{digits}f} ({s[1]:.{digits}f} to {s[2]:.{digits}f})"


def rows_of(out: Path, prefix: str, train_prefix: str, loss_keys: tuple[str, str], controller: str):
    rows, data = [], {}
    evals = sorted(out.glob(f"{prefix}_*min_*.json"), key=lambda p: (int(re.search(r"_(\d+)min_", p.name)[1]), p.name))
    for e in evals:
        m = re.fullmatch(rf"{prefix}_(\d+)min_(\w+)\.json", e.name)
        if not m:
            continue
        b, scene = int(m[1]), m[2]
        r = json.loads(e.read_text())
        train = out / f"{train_prefix}_{b}min.json"
        train = json.loads(train.read_text()) if train.exists() else None
        loss = "-" if not train else f"{train[loss_keys[0]]:.4f} → {train[loss_keys[1]]:.4f}"
        point = {
            "minutes": b,
            "episodes": r["episodes"],
            "falls": r["falls"],
            "success_rate": r["success_rate"],
            "commands": r.get("commands"),
            "progress_m": spread(r, "progress_m"),
            "tracking_rms_mps": spread(r, "tracking_rms_mps"),
            "yaw_tracking_rms_radps": spread(r, "yaw_tracking_rms_radps"),
            "held_out_loss": [train[loss_keys[0]], train[loss_keys[1]]] if train else None,
        }
        data.setdefault(scene, []).append(point)
        rows.append(
            f"| {controller} | {scene} ({r.get('commands', '')}) | {b} | {r['episodes']} | {r['falls']} | "
            f"{r['success_rate']:.2f} | {fmt(point['progress_m'])} | {fmt(point['tracking_rms_mps'], 3)} | {loss} |"
        )
    return rows, data


def main():
    out = Path(sys.argv[1])
    wm_rows, wm = rows_of(out, "eval", "finetune", ("validation_loss_before", "validation_loss_after"),
                          "MPPI, world model finetuned")
    bc_rows, bc = rows_of(out, "bc_eval", "bc", ("validation_mse_before", "validation_mse_after"),
                          "student, behaviour cloning")
    table = ["| controller | scene (commands) | minutes of data | episodes | falls | success | forward progress m, "
             "mean (min to max) | vx tracking RMS m/s | held-out loss before → after |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"] + wm_rows + bc_rows
    for scene, (before, after) in PAPER.items():
        table.append(f"| SimDist paper (quadruped, real) | {scene} | 0 → 36 | | | | {before} → {after} | | |")
    (out / "table.md").write_text("\n".join(table) + "\n")
    (out / "adapt.json").write_text(json.dumps({"world_model": wm, "student_bc": bc}, indent=1))
    print("\n".join(table))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, (ax_p, ax_t) = plt.subplots(1, 2, figsize=(11, 4))
    for label, data, style in (("MPPI, finetuned world model", wm, "-o"), ("student, BC", bc, "--s")):
        for scene, pts in data.items():
            prog = [p for p in pts if p["progress_m"] and p["commands"] == "forward"]
            if prog:
                xs = [p["minutes"] for p in prog]
                ax_p.errorbar(xs, [p["progress_m"][0] for p in prog],
                              yerr=[[p["progress_m"][0] - p["progress_m"][1] for p in prog],
                                    [p["progress_m"][2] - p["progress_m"][0] for p in prog]],
                              fmt=style, capsize=3, label=f"{label}, {scene}")
            trk = [p for p in pts if p["tracking_rms_mps"]]
            if trk:
                ax_t.plot([p["minutes"] for p in trk], [p["tracking_rms_mps"][0] for p in trk], style,
                          label=f"{label}, {scene} ({trk[0]['commands']})")
    for scene, (before, after) in PAPER.items():
        ax_p.plot([0, 36], [before, after], ":", label=f"SimDist paper, {scene}")
    ax_p.set_xlabel("minutes of data")
    ax_p.set_ylabel("forward progress in 20 s (m), mean and range")
    ax_t.set_xlabel("minutes of data")
    ax_t.set_ylabel("vx tracking RMS (m/s)")
    ax_p.legend(fontsize=7)
    ax_t.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "adapt.png", dpi=100)


if __name__ == "__main__":
    main()
