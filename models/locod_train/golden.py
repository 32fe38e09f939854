"""The golden observation fixture: simulated states of the training environment, the raw values
locod's observation builder reads from them (gyro, projected gravity, command, joint positions and
velocities, last action, ToF zones), and the observation vectors the Python builder made. locod's
test (src/policy/obs.rs, `golden_observations_match_the_training_environment`) builds the same
vectors from the same raw values with its own builder; a mismatch in order, scale, history or
depth handling fails there. models/tests/test_golden.py checks that the fixture is current.

Run: `python -m locod_train.golden --out ../tests/data/golden_obs.json`.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from .contract import deployable_terms, spec_json
from .env import BiwheelEnv, EnvConfig

STEPS = 24
RESET_AT = 15


def generate() -> dict:
    env = BiwheelEnv(EnvConfig(num_envs=1, seed=7, scene="stairs", commands="forward", randomise=False, noise_scale=0.0, push_mps=0.0))
    rng = np.random.default_rng(3)
    # Start a little way in, tilted, so gravity and depth are not trivial.
    env.state[0, 1 + 0] = 0.6
    steps = []
    for t in range(STEPS):
        if t == RESET_AT:
            env.deployable.reset(np.array([0]))
            env.action[:] = 0  # locod: history and last_action restart on every mode change
        raw = env.raw_terms(noisy=False)
        obs = env.deployable.build(raw)
        qp, qv = env.qpos(), env.qvel()
        steps.append(
            {
                "reset": t == RESET_AT or t == 0,
                "ang_vel_body_radps": raw["base_ang_vel"][0].tolist(),
                "projected_gravity_body": raw["projected_gravity"][0].tolist(),
                "command": raw["command"][0].tolist(),
                "q_rad": qp[0, 7 : 7 + env.nj].tolist(),
                "qd_radps": qv[0, 6 : 6 + env.nj].tolist(),
                "last_action": raw["last_action"][0].tolist(),
                "depth_m": raw["depth"][0].tolist(),
                "obs": obs[0].astype(float).tolist(),
            }
        )
        env.step(rng.normal(0, 0.3, (1, env.nj)))
    return {
        "about": "models/locod_train/golden.py: raw observation inputs and the Python builder's observations; depth_m < 0 is an invalid zone",
        "spec": json.loads(spec_json("policy", env.robot, deployable_terms())),
        "depth_sensors": ["front_far", "front_near"],
        "steps": steps,
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    with open(a.out, "w") as f:
        json.dump(generate(), f, indent=None)
        f.write("\n")
    print(f"golden: {a.out}")


if __name__ == "__main__":
    main()
