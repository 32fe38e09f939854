"""Observations exactly as locod builds them (src/policy/obs.rs, docs/model-contract.md), vectorised
over robots, and the contract JSON a model carries.

Not for: where the raw values come from (env.py computes them from the simulated state).

Each term: value = clip(scale * raw); with `history` h the term contributes its last h values,
oldest first, the history filled with the first value after a reset; `last_action` is the previous
action after clipping, before scaling, zero after a reset. A `depth` term is the named sensors'
zone distances capped at `max_range`, invalid zones reading `max_range`.
"""
from __future__ import annotations

import json

import numpy as np

RAW_DIMS = {"base_ang_vel": 3, "projected_gravity": 3, "command": 3}

DEPTH_SENSORS = ["front_far", "front_near"]
DEPTH_MAX_RANGE_M = 2.0
PROPRIO_HISTORY = 5


def deployable_terms(history: int = PROPRIO_HISTORY) -> list[dict]:
    """The observation of the students and of the world model's encoder: proprioception with a
    short history, the command, and the ToF zones of both sensors."""
    return [
        {"name": "base_ang_vel", "scale": 0.25, "history": history},
        {"name": "projected_gravity", "scale": 1.0, "history": history},
        {"name": "command", "scale": [2.0, 2.0, 1.0]},
        {"name": "joint_pos", "scale": 1.0, "history": history},
        {"name": "joint_vel", "scale": 0.05, "history": history},
        {"name": "last_action", "scale": 1.0, "history": history},
        {
            "name": "depth",
            "scale": 1.0,
            "sensors": DEPTH_SENSORS,
            "zones": 64,
            "max_range": DEPTH_MAX_RANGE_M,
        },
    ]


def term_dim(term: dict, nj: int) -> int:
    name = term["name"]
    if name in RAW_DIMS:
        return RAW_DIMS[name]
    if name in ("joint_pos", "joint_vel", "last_action"):
        return nj
    if name == "depth":
        return len(term["sensors"]) * term["zones"]
    if name == "height_scan":
        return term["rows"] * term["cols"]
    raise ValueError(f"unknown observation term {name!r}")


def obs_dim(terms: list[dict], nj: int) -> int:
    return sum(term_dim(t, nj) * t.get("history", 1) for t in terms)


class ObsBuilder:
    """Builds [B, O] observations from raw term values, keeping each robot's history."""

    def __init__(self, terms: list[dict], nj: int, batch: int):
        self.terms = terms
        self.nj = nj
        self.dims = [term_dim(t, nj) for t in terms]
        self.hist = [t.get("history", 1) for t in terms]
        self.dim = sum(d * h for d, h in zip(self.dims, self.hist))
        self.buffers = [np.zeros((batch, h, d), np.float32) for d, h in zip(self.dims, self.hist)]
        self.fresh = np.ones(batch, bool)

    def reset(self, ids: np.ndarray) -> None:
        """The next build fills these robots' histories with their first value."""
        self.fresh[ids] = True

    def build(self, raw: dict[str, np.ndarray]) -> np.ndarray:
        """raw: term name -> [B, dim] raw values (for `depth`: zone distances, negative = invalid)."""
        out = []
        for t, d, h, buf in zip(self.terms, self.dims, self.hist, self.buffers):
            v = self.value(t, raw[t["name"]])
            buf[:, :-1] = buf[:, 1:]
            buf[:, -1] = v
            if self.fresh.any():
                buf[self.fresh] = v[self.fresh, None, :]
            out.append(buf.reshape(buf.shape[0], h * d))
        self.fresh[:] = False
        return np.concatenate(out, axis=1)

    @staticmethod
    def value(term: dict, raw: np.ndarray) -> np.ndarray:
        raw = raw.astype(np.float32)
        if term["name"] == "depth":
            r = np.float32(term["max_range"])
            raw = np.where((raw >= 0) & np.isfinite(raw), np.minimum(raw, r), r)
        v = np.asarray(term["scale"], np.float32) * raw
        if "clip" in term:
            lo, hi = term["clip"]
            v = np.clip(v, lo, hi)
        return v.astype(np.float32)


def spec_json(kind: str, robot, terms: list[dict], **extra) -> str:
    spec = {
        "contract": 1,
        "kind": kind,
        "robot": robot.name,
        "control_hz": robot.policy_hz,
        "joints": robot.contract_joints(),
        "obs": terms,
        "action": {"dim": robot.nj, "clip": robot.action_clip},
    }
    spec.update(extra)
    return json.dumps(spec, sort_keys=True)
