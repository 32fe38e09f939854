"""Training terrain: a flat floor plus up to N_BOXES axis-aligned boxes per robot (a single step,
or stairs), and the two things the environment asks of it, vectorised over robots: the terrain
height under points (the teacher's privileged height samples) and where rays hit it (the ToF
sensors' zones, as the simulator's rangefinders see them).

Not for: physics (the same boxes are written into each robot's MjModel by env.py).

The evaluation scenes of models/robots/biwheel are instances of these layouts: `step` is one
8 cm box 1 m ahead, `stairs` five 10 cm rises of 30 cm run 1 m ahead.
"""
from __future__ import annotations

import numpy as np

from .robot import HIDDEN_BOX, N_BOXES

KINDS = ("flat", "step", "stairs")
LEVELS = 10


def layout(kind: str, level: int, rng: np.random.Generator) -> np.ndarray:
    """Boxes [N_BOXES, 6] (centre xyz, half sizes) of a terrain of `kind` at curriculum `level`
    (0 easiest .. LEVELS-1 hardest, at least the evaluation's height at the top levels)."""
    boxes = np.tile(np.array(HIDDEN_BOX), (N_BOXES, 1))
    boxes[:, 0] += np.arange(N_BOXES)
    frac = (level + 1) / LEVELS
    start = rng.uniform(0.8, 1.6)
    if kind == "step":
        h = rng.uniform(0.5, 1.0) * 0.10 * frac + 0.01
        boxes[0] = (start + 1.5, 0.0, h / 2, 1.5, 1.5, h / 2)
    elif kind == "stairs":
        rise = rng.uniform(0.6, 1.0) * 0.12 * frac + 0.01
        run = rng.uniform(0.25, 0.40)
        n = 5
        for i in range(n):
            top = rise * (i + 1)
            half_x = 0.5 * run + 1.5
            boxes[i] = (start + run * i + half_x, 0.0, top / 2, half_x, 1.5, top / 2)
    elif kind != "flat":
        raise ValueError(f"unknown terrain kind {kind!r}")
    return boxes


SCENES = ("flat", "step", "stairs", "slope", "soft")


def scene_layout(name: str) -> np.ndarray:
    """The evaluation scenes of models/robots/biwheel (generate.py) as boxes: `step` one 8 cm box
    1 m ahead, `stairs` five 10 cm rises of 30 cm run from 1 m ahead; the others are flat (the
    slope is a tilted gravity, the soft floor a contact setting: env.py)."""
    boxes = np.tile(np.array(HIDDEN_BOX), (N_BOXES, 1))
    boxes[:, 0] += np.arange(N_BOXES)
    if name == "step":
        boxes[0] = (2.0, 0.0, 0.04, 1.0, 1.0, 0.04)
    elif name == "stairs":
        rise, run = 0.10, 0.30
        for i in range(5):
            h = rise * (i + 1)
            half_x = 0.5 * run + 1.5
            boxes[i] = (1.0 + run * i + half_x, 0.0, h / 2, half_x, 1.0, h / 2)
    elif name not in SCENES:
        raise ValueError(f"unknown scene {name!r}; scenes: {', '.join(SCENES)}")
    return boxes


def heights(boxes: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Terrain height at world points. boxes [B, K, 6]; x, y [B, P] -> [B, P]."""
    c = boxes[:, None, :, :]
    inside = (np.abs(x[..., None] - c[..., 0]) <= c[..., 3]) & (np.abs(y[..., None] - c[..., 1]) <= c[..., 4])
    top = np.where(inside, c[..., 2] + c[..., 5], 0.0)
    return np.maximum(top.max(axis=-1), 0.0)


def raycast(boxes: np.ndarray, origin: np.ndarray, direction: np.ndarray, max_range: float) -> np.ndarray:
    """Distance along each ray to the floor (z = 0) or a box, -1 when nothing is hit within
    max_range. origin, direction [B, R, 3] (world frame, unit directions) -> [B, R]."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(direction[..., 2] < -1e-9, -origin[..., 2] / direction[..., 2], np.inf)
        t_floor = np.where(t_floor >= 0, t_floor, np.inf)
        o = origin[:, :, None, :]
        d = direction[:, :, None, :]
        lo = boxes[:, None, :, :3] - boxes[:, None, :, 3:]
        hi = boxes[:, None, :, :3] + boxes[:, None, :, 3:]
        inv = 1.0 / np.where(np.abs(d) < 1e-12, 1e-12, d)
        t1 = (lo - o) * inv
        t2 = (hi - o) * inv
        t_near = np.minimum(t1, t2).max(axis=-1)
        t_far = np.maximum(t1, t2).min(axis=-1)
        hit = (t_far >= np.maximum(t_near, 0.0)) & (t_far > 0)
        t_box = np.where(hit, np.maximum(t_near, 0.0), np.inf).min(axis=-1)
    t = np.minimum(t_floor, t_box)
    return np.where(t <= max_range, t, -1.0)
