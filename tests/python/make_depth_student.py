"""Writes a test student that observes depth: the proprioceptive terms of the test models plus a
`depth` term over the two ToF sensors of config/sim.toml (front_far, front_near; 8x8 zones, 4 m).
Random weights, small outputs: it exists so that tests/eval.rs can check that lock-step hands a
model real depth readings.

    python tests/python/make_depth_student.py OUT.pt
"""

import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models"))
import make_test_models as tm  # noqa: E402 (the test models' joints, terms and contract)

DEPTH = {"name": "depth", "scale": 1.0, "sensors": ["front_far", "front_near"], "zones": 64, "max_range": 4.0}


def main() -> int:
    terms = tm.proprio_terms(joint_vel_history=1)
    dim = tm.obs_dim(terms) + len(DEPTH["sensors"]) * DEPTH["zones"]
    torch.manual_seed(4)
    tm.save(tm.Student(tm.spec("policy", terms + [DEPTH]), dim), os.path.dirname(os.path.abspath(sys.argv[1])), os.path.basename(sys.argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
