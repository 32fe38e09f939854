"""The adaptation experiment's table and plot from scripts/adapt.sh's outputs.

    python scripts/adapt_table.py OUT BUDGET...

Reads OUT/eval_<b>min_<scene>.json (`locod eval --json`) and OUT/finetune_<b>min.json (`locod
finetune --json`); writes OUT/table.md, OUT/adapt.json and OUT/adapt.png (forward progress against
minutes of data, beside SimDist's published figures).
"""

import json
import sys
from pathlib import Path

# SimDist (quadruped, real robot): forward progress before and after 36 minutes of real data.
PAPER = {"slope": (0.68, 1.81), "soft": (2.08, 3.0)}


def spread(report, key):
    s = report.get(key)
    return (s["mean"], s["min"], s["max"]) if s else None


def main():
    out = Path(sys.argv[1])
    budgets = [int(b) for b in sys.argv[2:]]
    rows, data = [], {}
    for b in budgets:
        ft = out / f"finetune_{b}min.json"
        ft = json.loads(ft.read_text()) if ft.exists() else None
        for e in sorted(out.glob(f"eval_{b}min_*.json")):
            scene = e.stem.split("_", 2)[2]
            r = json.loads(e.read_text())
            progress = spread(r, "progress_m")
            track = spread(r, "tracking_rms_mps")
            data.setdefault(scene, []).append({
                "minutes": b,
                "episodes": r["episodes"],
                "falls": r["falls"],
                "success_rate": r["success_rate"],
                "progress_m": progress,
                "tracking_rms_mps": track,
                "validation_loss_before": ft and ft["validation_loss_before"],
                "validation_loss_after": ft and ft["validation_loss_after"],
            })
            fmt = lambda s: "-" if s is None else f"{s[0]:.2f} ({s[1]:.2f} to {s[2]:.2f})"
            loss = "-" if not ft else f"{ft['validation_loss_before']:.4f} → {ft['validation_loss_after']:.4f}"
            rows.append(f"| {scene} | {b} | {r['episodes']} | {r['falls']} | {r['success_rate']:.2f} | "
                        f"{fmt(progress)} | {fmt(track)} | {loss} |")
    table = ["| scene | minutes of data | episodes | falls | success | forward progress m, mean (min to max) "
             "| velocity tracking RMS m/s | held-out latent consistency before → after |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"] + rows
    for scene, (before, after) in PAPER.items():
        table.append(f"| SimDist paper, {scene} | 0 → 36 | | | | {before} → {after} | | |")
    (out / "table.md").write_text("\n".join(table) + "\n")
    (out / "adapt.json").write_text(json.dumps(data, indent=1))
    print("\n".join(table))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for scene, pts in data.items():
        pts = [p for p in pts if p["progress_m"]]
        xs = [p["minutes"] for p in pts]
        ax.errorbar(xs, [p["progress_m"][0] for p in pts],
                    yerr=[[p["progress_m"][0] - p["progress_m"][1] for p in pts],
                          [p["progress_m"][2] - p["progress_m"][0] for p in pts]],
                    marker="o", capsize=3, label=f"locod, {scene}")
        if scene in PAPER:
            ax.plot([0, 36], PAPER[scene], "--", label=f"SimDist paper, {scene}")
    ax.set_xlabel("minutes of data")
    ax.set_ylabel("forward progress (m)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "adapt.png", dpi=100)


if __name__ == "__main__":
    main()
