"""Model cards: for each exported model, a Markdown page beside it (the command that made it, the
seed, the data, the training curves as PNG, the contract) so a model file never travels without
its story.

Not for: training or evaluation (their metrics.csv and eval JSON are read here, never computed).
"""
from __future__ import annotations

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .common import read_metrics  # noqa: E402


def plot_curves(run_dir: str, keys: list[str], out_png: str, title: str, x: str = "iteration") -> bool:
    m = read_metrics(run_dir)
    keys = [k for k in keys if k in m]
    if not keys or x not in m:
        return False
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 1.9 * len(keys)), sharex=True)
    if len(keys) == 1:
        axes = [axes]
    for ax, k in zip(axes, keys):
        ax.plot(m[x], m[k], lw=1.0)
        ax.set_ylabel(k, fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(x)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return True


def write_card(path: str, name: str, summary: str, command: str, seed: int, data: str, curves: list[str], spec: dict, export: dict, extra: str = "") -> None:
    lines = [
        f"# {name}",
        "",
        summary,
        "",
        "| | |",
        "| --- | --- |",
        f"| file | `{os.path.basename(export['path'])}` |",
        f"| sha256 | `{export['sha256']}` |",
        f"| command | `{command}` |",
        f"| seed | {seed} |",
        f"| data | {data} |",
        f"| observation | {export.get('obs_dim', '?')} floats: {', '.join(t['name'] for t in spec['obs'])} |",
        f"| action | {spec['action']['dim']} joints, clip {spec['action']['clip']} |",
        "",
    ]
    for c in curves:
        lines += [f"![{os.path.basename(c)}]({os.path.basename(c)})", ""]
    if extra:
        lines += [extra, ""]
    lines += ["## Contract (`locod_spec()`)", "", "```json", json.dumps(spec, indent=1, sort_keys=True), "```", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))
