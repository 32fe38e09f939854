"""Transitions exported by `locod export`, for finetuning the world model's dynamics.

Reads either layout `locod export` writes: LeRobot v3 (parquet under data/, meta/info.json) or
numpy (one .npy per column, meta.json). `load_transitions` returns the frames whose `next` is
valid (same episode, next tick, no skipped cycle or dropped record, same mode) as numpy arrays;
`TransitionDataset` wraps them for torch.utils.data.DataLoader.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

STATE = "observation.state"
NEXT_STATE = "next.observation.state"


def _read_lerobot(root: Path) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    info = json.loads((root / "meta" / "info.json").read_text())
    files = sorted((root / "data").glob("chunk-*/file-*.parquet"))
    if not files:
        raise FileNotFoundError(f"{root}: no data/chunk-*/file-*.parquet")
    tables = [pq.read_table(f) for f in files]
    columns: dict[str, np.ndarray] = {}
    for name, feature in info["features"].items():
        parts = [t.column(name) for t in tables]
        if feature["dtype"] == "float32" and feature["shape"] != [1] or name in (STATE, NEXT_STATE):
            width = feature["shape"][0]
            flat = np.concatenate([p.combine_chunks().flatten().to_numpy() for p in parts])
            columns[name] = flat.astype(np.float32).reshape(-1, width)
        else:
            columns[name] = np.concatenate([p.to_numpy() for p in parts])
    return columns


def _read_numpy(root: Path) -> dict[str, np.ndarray]:
    meta = json.loads((root / "meta.json").read_text())
    names = list(meta["features"]) + ["timestamp"]
    return {n: np.load(root / f"{n}.npy") for n in names}


def load_columns(root: str | Path) -> dict[str, np.ndarray]:
    """Every column of an export, one row per frame."""
    root = Path(root)
    if (root / "meta" / "info.json").exists():
        return _read_lerobot(root)
    if (root / "meta.json").exists():
        return _read_numpy(root)
    raise FileNotFoundError(f"{root}: neither a LeRobot export (meta/info.json) nor a numpy export (meta.json)")


def load_transitions(root: str | Path) -> dict[str, np.ndarray]:
    """(state, action, next_state) triples and their context, valid pairs only."""
    c = load_columns(root)
    valid = c["next.valid"].astype(bool)
    out = {
        "state": c[STATE][valid],
        "action": c["action"][valid],
        "next_state": c[NEXT_STATE][valid],
        "command": c["observation.command"][valid],
        "episode_index": c["episode_index"][valid],
        "frame_index": c["frame_index"][valid],
    }
    for extra in ("observation.policy", "action.policy"):
        if extra in c:
            out[extra.replace(".", "_")] = c[extra][valid]
    return out


class TransitionDataset:
    """A map-style dataset of valid transitions as float32 tensors (torch imported lazily)."""

    def __init__(self, root: str | Path):
        import torch

        self._t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in load_transitions(root).items()}
        self._n = len(self._t["state"])

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int):
        return {k: v[i] for k, v in self._t.items()}
